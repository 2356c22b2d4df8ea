package main

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// The example broker takes clients, and with -sensors it holds a retained
// reading of each simulated sensor, so a dashboard shows them at once.
func TestBrokerWithSimulatedSensors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srv, err := start(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	// One round of readings (the context is done: no ticking), then a
	// client subscribes. Not the other way round: mochi-mqtt reads its
	// retained-message index unlocked when a client subscribes, which the
	// race detector reports when a later publish stores a message.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	simulate(ctx, srv, time.Hour)
	expect(t, subscribe(t, addr, "dashboard"), 1)
}

// subscribe connects a client to the broker at addr, subscribes it to
// sensors/#, and returns what it receives.
func subscribe(t *testing.T, addr, id string) <-chan paho.Message {
	t.Helper()
	readings := make(chan paho.Message, 1000)
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connecting: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	tok := c.Subscribe("sensors/#", 0, func(_ paho.Client, m paho.Message) {
		select {
		case readings <- m:
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribing: %v", tok.Error())
	}
	return readings
}

// expect waits for n retained readings of each of the three sensors, each
// a number.
func expect(t *testing.T, readings <-chan paho.Message, n int) {
	t.Helper()
	got := map[string]int{}
	deadline := time.After(10 * time.Second)
	for len(got) < 3 || fewest(got) < n {
		select {
		case m := <-readings:
			if _, err := strconv.ParseFloat(string(m.Payload()), 64); err != nil {
				t.Fatalf("%s: %q is no number", m.Topic(), m.Payload())
			}
			if m.Retained() {
				got[m.Topic()]++
			}
		case <-deadline:
			t.Fatalf("after 10 s, readings: %v", got)
		}
	}
}

// fewest is the smallest count in m.
func fewest(m map[string]int) int {
	first := true
	low := 0
	for _, v := range m {
		if first || v < low {
			low, first = v, false
		}
	}
	return low
}

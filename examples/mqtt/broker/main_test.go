package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// The example broker takes a client, and with -sensors it holds a retained
// reading of each simulated sensor at once and publishes new ones.
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
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	simulate(ctx, srv, 50*time.Millisecond)

	readings := make(chan paho.Message, 100)
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("test"))
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
	retained, live := map[string]bool{}, map[string]bool{}
	deadline := time.After(10 * time.Second)
	for len(retained) < 3 || len(live) < 3 {
		select {
		case m := <-readings:
			if _, err := strconv.ParseFloat(string(m.Payload()), 64); err != nil {
				t.Fatalf("%s: %q is no number", m.Topic(), m.Payload())
			}
			if m.Retained() {
				retained[m.Topic()] = true
			} else {
				live[m.Topic()] = true
			}
		case <-deadline:
			t.Fatalf("after 10 s: retained %v, live %v", keys(retained), keys(live))
		}
	}
}

func keys(m map[string]bool) string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	return fmt.Sprint(s)
}

// Command broker is an MQTT broker for trying the MQTT dashboard
// (examples/mqtt) without installing one: the embedded broker the tests
// use (mochi-mqtt), on a loopback address, open to any client. With
// -sensors it also publishes simulated readings, so the dashboard has
// something to show:
//
//	go run ./examples/mqtt/broker -sensors
//	go run ./cmd/caddy run --config examples/mqtt/Caddyfile
//
// It is a demo: no authentication, no persistence. Use a real broker
// (mosquitto, EMQX, HiveMQ...) for anything else.
package main

import (
	"context"
	"flag"
	"io"
	"log"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strconv"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:1883", "`address` to listen on")
	sensors := flag.Bool("sensors", false, "publish simulated readings on sensors/... every -every")
	every := flag.Duration("every", 2*time.Second, "interval between simulated readings")
	flag.Parse()
	if *every <= 0 {
		log.Fatal("-every must be positive")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	srv, err := start(*addr)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	log.Printf("MQTT broker on tcp://%s (Ctrl-C stops it)", *addr)
	if *sensors {
		log.Printf("publishing simulated readings on sensors/... every %s", *every)
		simulate(ctx, srv, *every)
	}
	<-ctx.Done()
}

// start runs a broker that lets any client in on addr.
func start(addr string) (*mochi.Server, error) {
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, err
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})); err != nil {
		return nil, err
	}
	if err := srv.Serve(); err != nil {
		return nil, err
	}
	return srv, nil
}

// simulate publishes, at once and then every interval until ctx ends, a
// temperature and a humidity reading that drift along sine curves,
// retained as sensors do, so a dashboard that connects later sees the
// current values at once.
func simulate(ctx context.Context, srv *mochi.Server, interval time.Duration) {
	readings := []struct {
		topic      string
		base, span float64
		period     float64 // in readings
	}{
		{"sensors/kitchen/temp", 21, 1.5, 40},
		{"sensors/bedroom/temp", 18.5, 1, 55},
		{"sensors/bathroom/humidity", 55, 12, 30},
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		for _, r := range readings {
			v := r.base + r.span*math.Sin(2*math.Pi*float64(n)/r.period)
			if err := srv.Publish(r.topic, []byte(strconv.FormatFloat(v, 'f', 1, 64)), true, 0); err != nil {
				log.Printf("publishing %s: %v", r.topic, err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

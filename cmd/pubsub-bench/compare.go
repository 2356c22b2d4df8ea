package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// peerOrder is the order of the side-by-side table's columns.
var peerOrder = []string{peerPubsub, peerMercure, peerNchan}

// printTable returns a printer of the JSON reports in files as the
// Markdown table that table makes of them.
func printTable(table func([]Report) string) func(io.Writer, []string) error {
	return func(w io.Writer, files []string) error {
		reports, err := readReports(files)
		if err != nil {
			return err
		}
		_, err = io.WriteString(w, table(reports))
		return err
	}
}

// readReports reads JSON reports.
func readReports(files []string) ([]Report, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("name the JSON reports to tabulate")
	}
	reports := make([]Report, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var r Report
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		reports = append(reports, r)
	}
	return reports, nil
}

// sideBySide is the side-by-side table: a row per scenario (the report's
// label), in the order in which they first appear, and a column per peer.
func sideBySide(reports []Report) string {
	var scenarios, peers []string
	cells := map[[2]string]string{}
	for _, r := range reports {
		peer := r.Peer
		if peer == "" {
			peer = peerPubsub
		}
		name := r.Label
		if name == "" {
			name = r.Mode
		}
		if !slices.Contains(scenarios, name) {
			scenarios = append(scenarios, name)
		}
		if !slices.Contains(peers, peer) {
			peers = append(peers, peer)
		}
		cells[[2]string{name, peer}] = r.sideBySideCell()
	}
	slices.SortStableFunc(peers, func(a, b string) int {
		return orderOf(a) - orderOf(b)
	})
	var b strings.Builder
	b.WriteString("| scenario | " + strings.Join(peers, " | ") + " |\n| --- |")
	b.WriteString(strings.Repeat(" ---: |", len(peers)) + "\n")
	for _, s := range scenarios {
		row := []string{s}
		for _, p := range peers {
			c, ok := cells[[2]string{s, p}]
			if !ok {
				c = "—"
			}
			row = append(row, c)
		}
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	return b.String()
}

func orderOf(peer string) int {
	if i := slices.Index(peerOrder, peer); i >= 0 {
		return i
	}
	return len(peerOrder)
}

// sideBySideCell is the report's figures that judge a server in its
// mode: RSS per idle subscriber; p99 and server CPU-s per 1M deliveries
// (µs per delivery) for a fan-out; under sustained load also the publish
// rate the server took and the deliveries/s; and any loss, drop or gap.
func (r *Report) sideBySideCell() string {
	s := r.Server
	var c string
	switch {
	case r.Mode == modeIdle && s != nil:
		c = bytesText(s.BytesPerSubscriber)
	case r.Mode == modeIdle:
		c = fmt.Sprintf("%d connected", r.Connected-r.Disconnected)
	default:
		c = "p99 " + msText(r.Latency.P99MS)
		if s != nil {
			c += fmt.Sprintf(" / %.1f", s.CPUSecondsPerMillionDeliveries)
		}
		if r.Mode != modeFanout {
			// Whether the server held the offered rate, then what it
			// delivered.
			c = fmt.Sprintf("%s msg/s → %s/s, %s", countText(r.PublishPerSec), countText(r.DeliveriesPerSec), c)
		}
	}
	var bad []string
	if r.ConnectFailed > 0 {
		bad = append(bad, fmt.Sprintf("%d not connected", r.ConnectFailed))
	}
	if r.Disconnected > 0 {
		bad = append(bad, fmt.Sprintf("%d dropped", r.Disconnected))
	}
	if r.Lost > 0 {
		bad = append(bad, fmt.Sprintf("lost %d", r.Lost))
	}
	if r.Gaps > 0 {
		bad = append(bad, fmt.Sprintf("%d gaps", r.Gaps))
	}
	if r.PublishFailed > 0 {
		bad = append(bad, fmt.Sprintf("%d publishes failed", r.PublishFailed))
	}
	if len(bad) > 0 {
		c += " (" + strings.Join(bad, ", ") + ")"
	}
	return c
}

// countText writes a rate in thousands past 10,000: 195k.
func countText(v float64) string {
	if v >= 10_000 {
		return fmt.Sprintf("%.0fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

// scaleOutTable is the scale-out table: per run, the instances,
// subscribers, deliveries/s and p99, the servers' CPU per delivery summed
// over the instances, and redis-server's CPU and commands per message.
func scaleOutTable(reports []Report) string {
	var b strings.Builder
	b.WriteString("| instances | subscribers | msg/s | deliveries/s | p99 | server CPU-s / 1M deliveries (all instances) | redis CPU-s / 1M messages (less idle) | redis commands / message | lost |\n")
	b.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n")
	for _, r := range reports {
		var cpu, redisCPU, cmds string
		if r.Server != nil {
			cpu = fmt.Sprintf("%.2f", r.Server.CPUSecondsPerMillionDeliveries)
		}
		if rd := r.Redis; rd != nil {
			redisCPU = fmt.Sprintf("%.1f (%.1f)", rd.CPUSecondsPerMillionMessages, rd.BusyCPUSecondsPerMillionMessages)
			cmds = fmt.Sprintf("%.1f %s", rd.CallsPerMessage, commandsText(rd.Commands))
		}
		fmt.Fprintf(&b, "| %d | %d | %.1f | %s | %s | %s | %s | %s | %d |\n", max(1, r.Instances), r.Connected-r.Disconnected,
			r.PublishPerSec, countText(r.DeliveriesPerSec), msText(r.Latency.P99MS), cpu, dashIfEmpty(redisCPU), dashIfEmpty(cmds), r.Lost)
	}
	return b.String()
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// sizingTable is what a user sizes a deployment by, from this project's
// reports among reports: per idle connection kind, the RSS and the
// subscribers a GiB holds; per load, the server CPU per delivery and the
// cores 100,000 deliveries/s take, with the latency seen there.
func sizingTable(reports []Report) string {
	var mem, cpu strings.Builder
	mem.WriteString("| idle subscribers, measured at | RSS each | subscribers per GiB | file descriptors each |\n| --- | ---: | ---: | ---: |\n")
	cpu.WriteString("| load | server CPU per delivery | cores per 100,000 deliveries/s | deliveries/s made | p99 |\n| --- | ---: | ---: | ---: | ---: |\n")
	for _, r := range reports {
		if (r.Peer != "" && r.Peer != peerPubsub) || r.Server == nil {
			continue
		}
		s := r.Server
		switch {
		case r.Mode == modeIdle && s.BytesPerSubscriber > 0:
			fds := "1"
			if r.HTTP2 && !r.OwnConn {
				fds = "1 per connection"
			}
			fmt.Fprintf(&mem, "| %s, %d | %s | %s | %s |\n", connectionKind(r), s.IdleSubscribers,
				bytesText(s.BytesPerSubscriber), countText(float64(int64(1<<30/s.BytesPerSubscriber))), fds)
		case r.Mode != modeIdle && s.CPUSecondsPerMillionDeliveries > 0:
			name := r.Label
			if name == "" {
				name = r.Mode
			}
			fmt.Fprintf(&cpu, "| %s | %.1f µs | %.2f | %s | %s |\n", name, s.CPUSecondsPerMillionDeliveries,
				s.CPUSecondsPerMillionDeliveries/10, countText(r.DeliveriesPerSec), msText(r.Latency.P99MS))
		}
	}
	return mem.String() + "\n" + cpu.String()
}

// connectionKind names how the subscribers of r were connected.
func connectionKind(r Report) string {
	kind := "SSE"
	if r.Transport == "ws" {
		kind = "WebSocket"
	}
	switch {
	case r.HTTP2 && r.OwnConn:
		return kind + ", HTTP/2 over TLS, a connection each"
	case r.HTTP2:
		return kind + ", HTTP/2 over TLS, streams sharing connections"
	case r.TLS:
		return kind + ", HTTP/1.1 over TLS"
	}
	return kind + ", HTTP/1.1"
}

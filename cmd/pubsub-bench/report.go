package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of one run, as printed and as JSON.
type Report struct {
	Label       string    `json:"label,omitempty"`
	Started     time.Time `json:"started"`
	Peer        string    `json:"peer,omitempty"`
	Mode        string    `json:"mode"`
	Transport   string    `json:"transport"`
	HTTP2       bool      `json:"http2,omitempty"`
	OwnConn     bool      `json:"http2_own_conn,omitempty"`
	URL         string    `json:"url"`
	Topic       string    `json:"topic"`
	Topics      int       `json:"topics,omitempty"`
	TLS         bool      `json:"tls,omitempty"`
	Instances   int       `json:"instances,omitempty"`
	Subscribers int       `json:"subscribers"`
	Procs       int       `json:"procs"`
	Sources     int       `json:"sources"`
	Publishers  int       `json:"publishers"`
	Batch       int       `json:"batch"`
	PublishVia  string    `json:"publish_via,omitempty"`
	Size        int       `json:"size"`
	Rate        float64   `json:"rate"`
	Count       int       `json:"count,omitempty"`
	DurationS   float64   `json:"duration_s"`

	Connected         int64            `json:"connected"`
	ConnectFailed     int64            `json:"connect_failed"`
	Disconnected      int64            `json:"disconnected"`
	ConnectSeconds    float64          `json:"connect_s"`
	ConnectErrors     map[string]int64 `json:"connect_errors,omitempty"`
	DisconnectReasons map[string]int64 `json:"disconnect_reasons,omitempty"`

	Published       int64            `json:"published"`
	PublishFailed   int64            `json:"publish_failed"`
	PublishSkipped  int64            `json:"publish_skipped"`
	PublishRequests int64            `json:"publish_requests"`
	PublishErrors   map[string]int64 `json:"publish_errors,omitempty"`
	PublishSeconds  float64          `json:"publish_s"`
	PublishPerSec   float64          `json:"publish_per_s"`
	PublishLatency  Percentiles      `json:"publish_latency"`

	Expected   int64 `json:"expected"`
	Delivered  int64 `json:"delivered"`
	Lost       int64 `json:"lost"`
	Duplicated int64 `json:"duplicated"`
	Gaps       int64 `json:"gaps"`
	Foreign    int64 `json:"foreign"`
	// DeliveredPerInstance splits Delivered by instance (-instances).
	DeliveredPerInstance []int64     `json:"delivered_per_instance,omitempty"`
	LoadSeconds          float64     `json:"load_s"`
	DeliveriesPerSec     float64     `json:"deliveries_per_s"`
	Latency              Percentiles `json:"latency"`

	Server *ServerReport `json:"server,omitempty"`
	Redis  *RedisReport  `json:"redis,omitempty"`
	Client ClientReport  `json:"client"`
	Notes  []string      `json:"notes,omitempty"`
}

// ServerReport is the server process as /proc saw it.
type ServerReport struct {
	PID int `json:"pid"`
	// PIDs are every server of a scale-out run, metered together.
	PIDs                []int `json:"pids,omitempty"`
	SameProcessAsClient bool  `json:"same_process_as_client,omitempty"`
	OpenFilesLimit      int   `json:"open_files_limit"`
	// RSS before any subscriber, idle with them all, highest and last
	// under load.
	RSSBaselineBytes   int64   `json:"rss_baseline_bytes"`
	IdleSubscribers    int64   `json:"idle_subscribers"`
	RSSIdleBytes       int64   `json:"rss_idle_bytes"`
	RSSLoadPeakBytes   int64   `json:"rss_load_peak_bytes,omitempty"`
	RSSEndBytes        int64   `json:"rss_end_bytes,omitempty"`
	BytesPerSubscriber float64 `json:"bytes_per_subscriber"`
	IdleCPUCores       float64 `json:"idle_cpu_cores"`
	IdleWindowS        float64 `json:"idle_window_s"`
	LoadCPUSeconds     float64 `json:"load_cpu_s"`
	LoadCPUCores       float64 `json:"load_cpu_cores"`
	// The figures to judge the server by.
	CPUSecondsPerMillionDeliveries float64 `json:"cpu_s_per_million_deliveries"`
	CPUSecondsPerMillionPublishes  float64 `json:"cpu_s_per_million_publishes"`
}

// ClientReport is the load client's own CPU (all its processes).
type ClientReport struct {
	LoadCPUSeconds                 float64 `json:"load_cpu_s"`
	LoadCPUCores                   float64 `json:"load_cpu_cores"`
	CPUSecondsPerMillionDeliveries float64 `json:"cpu_s_per_million_deliveries"`
}

func newReport(cfg Config) *Report {
	r := &Report{
		Label:       cfg.Label,
		Started:     time.Now().UTC().Truncate(time.Second),
		Peer:        cfg.Peer,
		Topics:      cfg.Topics,
		TLS:         cfg.target.tls,
		Instances:   cfg.Instances,
		Mode:        cfg.Mode,
		Transport:   cfg.Transport,
		HTTP2:       cfg.HTTP2,
		OwnConn:     cfg.OwnConn,
		URL:         cfg.URL,
		Subscribers: cfg.Subscribers,
		Sources:     cfg.Sources,
		Publishers:  cfg.Publishers,
		Batch:       cfg.Batch,
		PublishVia:  cfg.PublishVia,
		Size:        cfg.Size,
		Rate:        cfg.Rate,
	}
	switch cfg.Mode {
	case modeFanout:
		r.Count = cfg.Count
	case modeSustained, modePublish:
		r.DurationS = cfg.Duration.Seconds()
	}
	return r
}

// note records a warning in the report and prints it at once.
func (r *Report) note(log io.Writer, format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.Notes = append(r.Notes, s)
	fmt.Fprintln(log, "note:", s)
}

// finish adds the workers' and publishers' totals.
func (r *Report) finish(res workerResult, pub *publisher) {
	r.Connected = res.Connected
	r.ConnectFailed = res.Failed
	r.Disconnected = res.Disconnected
	r.ConnectErrors = res.ConnectErrors
	r.DisconnectReasons = res.DisconnectReasons
	r.Published = pub.acked.Load()
	r.PublishFailed = pub.failures.Load()
	r.PublishRequests = pub.requests.Load()
	r.PublishErrors = pub.errors.snapshot()
	r.PublishLatency = pub.latency.Snapshot().Percentiles()
	r.Delivered = res.Unique
	r.Lost = max(0, r.Expected-res.Unique)
	r.Duplicated = res.Duplicated
	r.Gaps = res.Gaps
	r.Foreign = res.Foreign
	r.DeliveredPerInstance = res.PerServer
	r.Latency = res.Latency.Percentiles()
	if r.PublishFailed > 0 {
		r.Notes = append(r.Notes, "some publishes failed: deliveries of those are not expected, but may arrive")
	}
	if r.PublishSkipped > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d publish requests were not sent on time: every publisher was waiting for an answer, the server answers slower than the rate needs (-publishers keeps more requests in flight)", r.PublishSkipped))
	}
}

// WriteTable prints the report for people.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	title := fmt.Sprintf("pubsub-bench %s over %s: %d subscribers (%d procs, %d source addresses)", r.Mode, r.transportText(), r.Subscribers, r.Procs, r.Sources)
	if r.Peer != "" && r.Peer != peerPubsub {
		title = r.Peer + ": " + title
	}
	if r.Topics > 1 {
		title += fmt.Sprintf(", %d topics", r.Topics)
	}
	if r.Instances > 1 {
		title += fmt.Sprintf(", %d instances on one redis-server", r.Instances)
	}
	if r.Label != "" {
		title += " — " + r.Label
	}
	fmt.Fprintln(tw, title)
	if s := r.Server; s != nil && r.Mode != modeIdle {
		fmt.Fprintf(tw, "SERVER CPU\t%.2f CPU-s per 1M deliveries\t(%.2f CPU-s per 1M publishes)\n", s.CPUSecondsPerMillionDeliveries, s.CPUSecondsPerMillionPublishes)
	}
	if s := r.Server; s != nil {
		fmt.Fprintf(tw, "SERVER MEMORY\t%s per idle subscriber\t(RSS %s with none, %s with %d)\n", bytesText(s.BytesPerSubscriber), bytesText(float64(s.RSSBaselineBytes)), bytesText(float64(s.RSSIdleBytes)), s.IdleSubscribers)
	}
	fmt.Fprintf(tw, "subscribers\t%d connected, %d failed, %d dropped\tconnect %.1fs\n", r.Connected, r.ConnectFailed, r.Disconnected, r.ConnectSeconds)
	if r.Mode != modeIdle {
		rate, perSec := "", ""
		if r.Mode != modeFanout {
			// A few spaced messages have no meaningful rate.
			rate = fmt.Sprintf("%.1f msg/s; ", r.PublishPerSec)
			perSec = fmt.Sprintf("%.0f deliveries/s over %.1fs", r.DeliveriesPerSec, r.LoadSeconds)
		}
		fmt.Fprintf(tw, "published\t%d messages in %d requests %s, %d failed\t%srequest p50 %s, p99 %s\n", r.Published, r.PublishRequests, r.via(), r.PublishFailed, rate, msText(r.PublishLatency.P50MS), msText(r.PublishLatency.P99MS))
		fmt.Fprintf(tw, "delivered\t%d of %d: lost %d, duplicated %d, gaps %d\t%s\n", r.Delivered, r.Expected, r.Lost, r.Duplicated, r.Gaps, perSec)
		if len(r.DeliveredPerInstance) > 0 {
			fmt.Fprintf(tw, "per instance\t%v\n", r.DeliveredPerInstance)
		}
		l := r.Latency
		fmt.Fprintf(tw, "latency\tp50 %s  p90 %s  p99 %s  max %s\t(mean %s, %d samples)\n", msText(l.P50MS), msText(l.P90MS), msText(l.P99MS), msText(l.MaxMS), msText(l.MeanMS), l.Count)
	}
	if s := r.Server; s != nil {
		fmt.Fprintf(tw, "server\tPID %d, idle CPU %.3f cores over %.0fs\t", s.PID, s.IdleCPUCores, s.IdleWindowS)
		if r.Mode != modeIdle {
			fmt.Fprintf(tw, "load CPU %.2f cores (%.2f s), RSS peak %s", s.LoadCPUCores, s.LoadCPUSeconds, bytesText(float64(s.RSSLoadPeakBytes)))
		}
		fmt.Fprintln(tw)
	}
	if rd := r.Redis; rd != nil && r.Mode != modeIdle {
		fmt.Fprintf(tw, "redis\t%.2f CPU-s per 1M messages (%.2f less its idle %.3f cores)\t%.1f commands per message %s\n", rd.CPUSecondsPerMillionMessages, rd.BusyCPUSecondsPerMillionMessages, rd.IdleCPUCores, rd.CallsPerMessage, commandsText(rd.Commands))
	}
	if r.Mode != modeIdle {
		fmt.Fprintf(tw, "client\t%.2f cores under load\t%.2f CPU-s per 1M deliveries\n", r.Client.LoadCPUCores, r.Client.CPUSecondsPerMillionDeliveries)
	}
	for _, m := range []struct {
		name string
		m    map[string]int64
	}{{"connect errors", r.ConnectErrors}, {"drop reasons", r.DisconnectReasons}, {"publish errors", r.PublishErrors}} {
		if len(m.m) > 0 {
			fmt.Fprintf(tw, "%s\t%s\n", m.name, describeCounts(m.m))
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(tw, "note\t%s\n", n)
	}
}

// transportText is the subscribers' transport, with TLS and HTTP/2 when
// they used them.
func (r *Report) transportText() string {
	switch {
	case r.HTTP2 && r.OwnConn:
		return r.Transport + " (HTTP/2, a connection each)"
	case r.HTTP2:
		return r.Transport + " (HTTP/2)"
	case r.TLS:
		return r.Transport + " (TLS)"
	}
	return r.Transport
}

// commandsText lists commands per message, most first: "(xadd 1.00, ...)".
func commandsText(m map[string]float64) string {
	if len(m) == 0 {
		return ""
	}
	keys := byCount(m)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %.2f", k, m[k])
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// byCount returns m's keys, largest value first, then by name.
func byCount[V int64 | float64](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool { return m[keys[a]] > m[keys[b]] || m[keys[a]] == m[keys[b]] && keys[a] < keys[b] })
	return keys
}

func msText(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0fms", v)
	}
	return fmt.Sprintf("%.2fms", v)
}

func bytesText(b float64) string {
	switch {
	case b >= 1<<30 || b <= -(1<<30):
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20 || b <= -(1<<20):
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10 || b <= -(1<<10):
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

// printMarkdown prints one table row per JSON report file.
func printMarkdown(w io.Writer, files []string) error {
	if len(files) == 0 {
		return fmt.Errorf("-report: name the JSON reports to tabulate")
	}
	fmt.Fprintln(w, "| run | mode | N | load | server CPU-s / 1M deliveries | p50 | p90 | p99 | max | deliveries/s | published/s | delivered / expected | lost | dup | server RSS / idle subscriber | server idle CPU | client CPU-s / 1M deliveries | connected |")
	fmt.Fprintln(w, "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var r Report
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		fmt.Fprintln(w, r.markdownRow())
	}
	return nil
}

func (r *Report) markdownRow() string {
	name := r.Label
	if name == "" {
		name = r.Mode
	}
	load := "—"
	switch r.Mode {
	case modeFanout:
		load = fmt.Sprintf("%d × 1 msg, %d B", r.Count, r.Size)
	case modeSustained:
		load = fmt.Sprintf("%g msg/s × %gs, %d B", r.Rate, r.DurationS, r.Size)
	case modePublish:
		load = fmt.Sprintf("%d publishers%s, batch %d, %gs, %d B", r.Publishers, r.via(), r.Batch, r.DurationS, r.Size)
	}
	dash := func(ok bool, s string) string {
		if !ok {
			return "—"
		}
		return s
	}
	loaded := r.Mode != modeIdle
	var cpuPerM, perSub, idle string
	if s := r.Server; s != nil {
		cpuPerM = dash(loaded, fmt.Sprintf("%.2f", s.CPUSecondsPerMillionDeliveries))
		// A few subscribers weigh less than the noise of the heap.
		perSub = dash(s.IdleSubscribers >= 100, bytesText(s.BytesPerSubscriber))
		// Shorter windows than idle mode's miss the heartbeats.
		idle = dash(r.Mode == modeIdle, fmt.Sprintf("%.3f cores", s.IdleCPUCores))
	}
	rated := loaded && r.Mode != modeFanout
	cols := []string{
		name, r.Mode + " " + r.transportText(), fmt.Sprint(r.Subscribers), load,
		cpuPerM,
		dash(loaded, msText(r.Latency.P50MS)), dash(loaded, msText(r.Latency.P90MS)),
		dash(loaded, msText(r.Latency.P99MS)), dash(loaded, msText(r.Latency.MaxMS)),
		dash(rated, fmt.Sprintf("%.0f", r.DeliveriesPerSec)),
		dash(rated, fmt.Sprintf("%.0f", r.PublishPerSec)),
		dash(loaded, fmt.Sprintf("%d / %d", r.Delivered, r.Expected)),
		dash(loaded, fmt.Sprint(r.Lost)), dash(loaded, fmt.Sprint(r.Duplicated)),
		perSub, idle,
		dash(loaded, fmt.Sprintf("%.2f", r.Client.CPUSecondsPerMillionDeliveries)),
		fmt.Sprint(r.Connected - r.Disconnected),
	}
	return "| " + strings.Join(cols, " | ") + " |"
}

// via names how the publishes went when not as JSON POSTs (-publish), as
// " (form)" or " (ws)"; runs before the flag have none.
func (r *Report) via() string {
	if r.PublishVia == "" || r.PublishVia == publishJSON {
		return ""
	}
	return " (" + r.PublishVia + ")"
}

package main

import (
	"errors"
	"fmt"
	"image/color"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// The size of every figure, in points (about 16 × 10 cm).
const width, height = 520, 300

// figure is one SVG file: its name and how it is drawn from the builds.
type figure struct {
	file string
	draw func([]build) (*plot.Plot, error)
}

var figures = []figure{
	{"fanout-latency.svg", fanoutLatency},
	{"idle-memory.svg", idleMemory},
	{"cpu-per-delivery.svg", cpuPerDelivery},
	{"publish-throughput.svg", publishThroughput},
}

// drawAll writes every figure into dir and returns the files' paths.
func drawAll(builds []build, dir string) ([]string, error) {
	// The metrics of the Liberation fonts gonum/plot embeds; the SVG
	// names the family, so a viewer without it uses its sans-serif.
	plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"}
	var files []string
	for _, f := range figures {
		p, err := f.draw(builds)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.file, err)
		}
		path := filepath.Join(dir, f.file)
		if err := p.Save(width, height, path); err != nil {
			return nil, err
		}
		files = append(files, path)
	}
	return files, nil
}

// newPlot is a plot with a title, axis labels and a grid, its y axis
// from 0 so that differences are seen at their true size.
func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

// headroom raises the y axis above the data, for the legend.
func headroom(p *plot.Plot) { p.Y.Max *= 1.2 }

// fromZero starts the x axis at 0 and ends it a little past the data, so
// that the last points stay clear of the frame.
func fromZero(p *plot.Plot) {
	p.X.Min = 0
	p.X.Max *= 1.04
}

// line adds a line with points of xys in the colour of series i, dashed
// when dashed, named in the legend.
func line(p *plot.Plot, name string, i int, dashed bool, xys plotter.XYs) error {
	l, s, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	l.Color = plotutil.Color(i)
	s.Color = plotutil.Color(i)
	s.Shape = plotutil.Shape(i)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
	}
	p.Add(l, s)
	p.Legend.Add(name, l, s)
	return nil
}

// bySubscribers sorts reports by their number of subscribers.
func bySubscribers(rs []report) []report {
	sort.SliceStable(rs, func(a, b int) bool { return rs[a].Subscribers < rs[b].Subscribers })
	return rs
}

var errNoData = errors.New("no report of this kind in any build")

// fanoutLatency: one message to N SSE subscribers, p50 and p99 of the
// time from publish to each delivery, against N.
func fanoutLatency(builds []build) (*plot.Plot, error) {
	p := newPlot("One message to N SSE subscribers: latency", "subscribers", "ms from publish to delivery")
	drawn := false
	for i, b := range builds {
		rs := bySubscribers(b.pick(func(r report) bool { return r.Mode == "fanout" && r.Transport == "sse" }))
		if len(rs) == 0 {
			continue
		}
		p99, p50 := make(plotter.XYs, len(rs)), make(plotter.XYs, len(rs))
		for k, r := range rs {
			p99[k] = plotter.XY{X: float64(r.Subscribers), Y: r.Latency.P99MS}
			p50[k] = plotter.XY{X: float64(r.Subscribers), Y: r.Latency.P50MS}
		}
		if err := line(p, b.Name+" p99", i, false, p99); err != nil {
			return nil, err
		}
		if err := line(p, b.Name+" p50", i, true, p50); err != nil {
			return nil, err
		}
		drawn = true
	}
	if !drawn {
		return nil, errNoData
	}
	fromZero(p)
	headroom(p)
	return p, nil
}

// idleMemory: the server's RSS per idle SSE subscriber against N.
func idleMemory(builds []build) (*plot.Plot, error) {
	p := newPlot("Server memory per idle subscriber (RSS)", "idle SSE subscribers", "KiB per subscriber")
	drawn := false
	for i, b := range builds {
		rs := bySubscribers(b.pick(func(r report) bool {
			return r.Mode == "idle" && r.Transport == "sse" && r.Server != nil && r.Server.IdleSubscribers > 0
		}))
		if len(rs) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(rs))
		for k, r := range rs {
			xys[k] = plotter.XY{X: float64(r.Subscribers), Y: r.Server.BytesPerSubscriber / 1024}
		}
		if err := line(p, b.Name, i, false, xys); err != nil {
			return nil, err
		}
		drawn = true
	}
	if !drawn {
		return nil, errNoData
	}
	fromZero(p)
	p.Legend.Top = false
	headroom(p)
	return p, nil
}

// cpuPerDelivery: the server's CPU-seconds per million deliveries of the
// fan-out and sustained runs, the figure to judge the server by.
func cpuPerDelivery(builds []build) (*plot.Plot, error) {
	p := newPlot("Server CPU per delivery", "", "CPU-s per million deliveries")
	return bars(p, builds, func(r report) bool {
		return (r.Mode == "fanout" || r.Mode == "sustained") && r.Server != nil
	}, func(a, b report) bool {
		// Fan-outs first, by size; then the sustained runs as measured.
		if a.Mode != b.Mode {
			return a.Mode == "fanout"
		}
		return a.Mode == "fanout" && a.Subscribers < b.Subscribers
	}, func(r report) string {
		if r.Mode == "fanout" {
			return fmt.Sprintf("fan-out %s\n%d", r.Transport, r.Subscribers)
		}
		return fmt.Sprintf("%s %g/s\n× %d", r.Transport, r.Rate, r.Subscribers)
	}, func(r report) float64 { return r.Server.CPUSecondsPerMillionDeliveries })
}

// publishThroughput: messages published per second into one hub.
func publishThroughput(builds []build) (*plot.Plot, error) {
	p := newPlot("Publish throughput, one hub", "", "thousand messages per second")
	return bars(p, builds, func(r report) bool { return r.Mode == "publish" }, func(a, b report) bool {
		if a.Batch != b.Batch {
			return a.Batch < b.Batch
		}
		return a.Publishers < b.Publishers
	}, func(r report) string {
		if r.Batch > 1 {
			return fmt.Sprintf("%d publishers\nbatches of %d", r.Publishers, r.Batch)
		}
		return fmt.Sprintf("%d publishers\none per request", r.Publishers)
	}, func(r report) float64 { return r.PublishPerSec / 1000 })
}

// bars draws value of the reports keep accepts as groups of bars, one
// group per run (named by name, in the first build's runs sorted by
// less), one bar per build. Runs some build lacks are left out: a missing
// bar would read as zero.
func bars(p *plot.Plot, builds []build, keep func(report) bool, less func(a, b report) bool, name func(report) string, value func(report) float64) (*plot.Plot, error) {
	var names []string
	values := make([]map[string]float64, len(builds))
	for i, b := range builds {
		values[i] = map[string]float64{}
		rs := b.pick(keep)
		sort.SliceStable(rs, func(x, y int) bool { return less(rs[x], rs[y]) })
		for _, r := range rs {
			n := name(r)
			if i == 0 {
				names = append(names, n)
			}
			values[i][n] = value(r)
		}
	}
	var common []string
	for _, n := range names {
		inAll := true
		for i := range builds {
			if _, ok := values[i][n]; !ok {
				inAll = false
			}
		}
		if inAll {
			common = append(common, n)
		}
	}
	if len(common) == 0 {
		return nil, errNoData
	}
	w := vg.Points(float64(width-80) / float64(len(common)*(len(builds)+1)))
	for i, b := range builds {
		vs := make(plotter.Values, len(common))
		for k, n := range common {
			vs[k] = values[i][n]
		}
		bc, err := plotter.NewBarChart(vs, w)
		if err != nil {
			return nil, err
		}
		bc.Color = plotutil.Color(i)
		bc.LineStyle.Color = color.Black
		bc.LineStyle.Width = vg.Points(0.5)
		bc.Offset = w * vg.Length(float64(i)-float64(len(builds)-1)/2)
		p.Add(bc)
		p.Legend.Add(b.Name, bc)
	}
	p.NominalX(common...)
	// Half a group of room beside the outer groups.
	p.X.Min, p.X.Max = -0.5, float64(len(common))-0.5
	p.X.Tick.Label.Font.Size = vg.Points(8)
	p.Legend.ThumbnailWidth = vg.Points(12)
	headroom(p)
	return p, nil
}

package main

import (
	"math"
	"math/bits"
	"sort"
	"strconv"
	"sync/atomic"
	"time"
)

// Latency histogram: log-linear buckets, 64 per power of two (under 1.6%
// error), exact below 64 ns, capped at 2^40 ns (18 min). Fixed size, so
// memory does not grow with the number of samples.
const (
	subBucketBits = 6
	subBuckets    = 1 << subBucketBits
	maxExponent   = 40 - subBucketBits - 1
	numBuckets    = subBuckets + (maxExponent+1)*subBuckets
)

func bucketOf(v int64) int {
	if v < subBuckets {
		return int(max(v, 0))
	}
	exp := bits.Len64(uint64(v)) - subBucketBits - 1
	if exp > maxExponent {
		return numBuckets - 1
	}
	mantissa := int(v >> exp) // in [64, 128)
	return subBuckets + exp*subBuckets + mantissa - subBuckets
}

// bucketValue is the middle of bucket b's range, in ns.
func bucketValue(b int) int64 {
	if b < subBuckets {
		return int64(b)
	}
	exp := (b - subBuckets) / subBuckets
	mantissa := int64((b-subBuckets)%subBuckets + subBuckets)
	return mantissa<<exp + (int64(1)<<exp)/2
}

// Histogram counts durations. Record is safe for concurrent use.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	maxNS  atomic.Int64
	sumNS  atomic.Int64
}

// Record adds one sample.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	h.counts[bucketOf(v)].Add(1)
	h.sumNS.Add(max(v, 0))
	for {
		m := h.maxNS.Load()
		if v <= m || h.maxNS.CompareAndSwap(m, v) {
			return
		}
	}
}

// Snapshot returns the histogram's counts in the sparse form workers send
// to the parent.
func (h *Histogram) Snapshot() HistogramData {
	d := HistogramData{Buckets: map[string]uint64{}, MaxNS: h.maxNS.Load(), SumNS: h.sumNS.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			d.Buckets[strconv.Itoa(i)] = c
		}
	}
	return d
}

// HistogramData is a histogram as JSON: bucket index -> count.
type HistogramData struct {
	Buckets map[string]uint64 `json:"buckets"`
	MaxNS   int64             `json:"max_ns"`
	SumNS   int64             `json:"sum_ns"`
}

// Merge adds o into d.
func (d *HistogramData) Merge(o HistogramData) {
	if d.Buckets == nil {
		d.Buckets = map[string]uint64{}
	}
	for k, c := range o.Buckets {
		d.Buckets[k] += c
	}
	d.MaxNS = max(d.MaxNS, o.MaxNS)
	d.SumNS += o.SumNS
}

// Percentiles summarises a latency distribution in milliseconds.
type Percentiles struct {
	Count  uint64  `json:"count"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	MaxMS  float64 `json:"max_ms"`
}

// Percentiles computes the summary of d.
func (d HistogramData) Percentiles() Percentiles {
	type bucket struct {
		index int
		count uint64
	}
	var bs []bucket
	var total uint64
	for k, c := range d.Buckets {
		i, err := strconv.Atoi(k)
		if err != nil || i < 0 || i >= numBuckets {
			continue
		}
		bs = append(bs, bucket{i, c})
		total += c
	}
	if total == 0 {
		return Percentiles{}
	}
	sort.Slice(bs, func(a, b int) bool { return bs[a].index < bs[b].index })
	at := func(q float64) float64 {
		rank := uint64(math.Ceil(q * float64(total)))
		var seen uint64
		for _, b := range bs {
			seen += b.count
			if seen >= rank {
				// A bucket's middle may exceed the exact maximum.
				return ms(min(bucketValue(b.index), d.MaxNS))
			}
		}
		return ms(d.MaxNS)
	}
	return Percentiles{
		Count:  total,
		MeanMS: ms(d.SumNS / int64(total)),
		P50MS:  at(0.50),
		P90MS:  at(0.90),
		P99MS:  at(0.99),
		MaxMS:  ms(d.MaxNS),
	}
}

func ms(ns int64) float64 { return math.Round(float64(ns)/1e3) / 1e3 }

// stamp is what every benchmark message carries in its data: which
// publisher sent it, its sequence number within that publisher, and when
// it was sent.
type stamp struct {
	pub, seq, sentNS int64
}

// parseStamp finds the stamp in a message as any transport delivers it:
// the data JSON, or the data embedded as an escaped string in an envelope.
// It scans instead of decoding, since the load client's CPU per message
// bounds what it can measure.
func parseStamp(b []byte) (stamp, bool) {
	var s stamp
	var ok1, ok2, ok3 bool
	s.pub, ok1 = intAfter(b, "pub")
	s.seq, ok2 = intAfter(b, "seq")
	s.sentNS, ok3 = intAfter(b, "sent_ns")
	return s, ok1 && ok2 && ok3
}

// intAfter returns the integer value of JSON key in b, whether the object
// is plain ("key":1) or escaped inside a string (\"key\":1).
func intAfter(b []byte, key string) (int64, bool) {
	for i := 0; i+len(key) < len(b); i++ {
		if b[i] != '"' || string(b[i+1:min(i+1+len(key), len(b))]) != key {
			continue
		}
		j := i + 1 + len(key)
		if j < len(b) && b[j] == '\\' {
			j++
		}
		if j+1 >= len(b) || b[j] != '"' || b[j+1] != ':' {
			continue
		}
		j += 2
		start := j
		var v int64
		for j < len(b) && b[j] >= '0' && b[j] <= '9' && j-start < 19 {
			v = v*10 + int64(b[j]-'0')
			j++
		}
		return v, j > start
	}
	return 0, false
}

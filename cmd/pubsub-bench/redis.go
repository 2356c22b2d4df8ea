package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// RedisReport is the redis-server a scale-out run shares, over the load
// window: its CPU and the commands it ran, per published message.
type RedisReport struct {
	PID  int    `json:"pid"`
	Addr string `json:"addr"`
	// CPUSecondsPerMillionMessages is redis-server's CPU per million
	// published messages; ...Busy leaves out what it spends idle with
	// the subscribers connected (IdleCPUCores: its timers, the
	// instances' pings and blocked reads), which dominates at low rates.
	CPUSecondsPerMillionMessages     float64 `json:"cpu_s_per_million_messages"`
	BusyCPUSecondsPerMillionMessages float64 `json:"busy_cpu_s_per_million_messages"`
	IdleCPUCores                     float64 `json:"idle_cpu_cores"`
	// CallsPerMessage is all commands per message; Commands splits them
	// by command (INFO commandstats).
	CallsPerMessage float64            `json:"calls_per_message"`
	Commands        map[string]float64 `json:"commands_per_message,omitempty"`
}

// measure fills r from samples and command counts before and after the
// load, in which messages were published.
func (r *RedisReport) measure(before, after procSample, callsBefore, callsAfter map[string]int64, messages int64) {
	if messages <= 0 {
		return
	}
	cpu := (after.cpu - before.cpu).Seconds()
	r.CPUSecondsPerMillionMessages = cpu / float64(messages) * 1e6
	busy := max(0, cpu-r.IdleCPUCores*after.at.Sub(before.at).Seconds())
	r.BusyCPUSecondsPerMillionMessages = busy / float64(messages) * 1e6
	r.Commands = map[string]float64{}
	var total int64
	for cmd, n := range callsAfter {
		if d := n - callsBefore[cmd]; d > 0 && cmd != "info" {
			r.Commands[cmd] = float64(d) / float64(messages)
			total += d
		}
	}
	r.CallsPerMessage = float64(total) / float64(messages)
}

// redisCommandCalls returns the calls of each command so far from the
// redis-server at addr (INFO commandstats), or nil when it cannot.
func redisCommandCalls(addr string) map[string]int64 {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n"); err != nil {
		return nil
	}
	text, err := readBulk(bufio.NewReader(conn))
	if err != nil {
		return nil
	}
	return parseCommandStats(text)
}

// readBulk reads one RESP bulk string answer.
func readBulk(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(line, "$") {
		return "", fmt.Errorf("redis answered %q", strings.TrimSpace(line))
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 0 || n > 1<<20 {
		return "", fmt.Errorf("redis bulk length %q", strings.TrimSpace(line))
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

// parseCommandStats reads INFO commandstats lines,
// "cmdstat_xadd:calls=3,usec=...", into calls by command.
func parseCommandStats(text string) map[string]int64 {
	calls := map[string]int64{}
	for line := range strings.SplitSeq(text, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_")
		if !ok {
			continue
		}
		name, fields, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		for f := range strings.SplitSeq(fields, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					calls[name] = n
				}
			}
		}
	}
	return calls
}

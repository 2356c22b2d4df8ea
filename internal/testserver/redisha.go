package testserver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

// RedisSentinel is a master, one replica of it and three Sentinels that
// watch it under MasterName, all on loopback, stopped when the test ends.
type RedisSentinel struct {
	Master, Replica *Redis
	Sentinels       []*Redis
	MasterName      string
	// URL is go-redis' failover URL naming the three Sentinels.
	URL string
}

// StartRedisSentinel starts a master, a replica and three Sentinels
// (skipping or failing as StartRedis does when the binaries are missing),
// and returns once the replica is in sync and every Sentinel knows them.
// The Sentinels judge the master down after 1 s without an answer.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	NeedBinary(t, "redis-sentinel")
	s := &RedisSentinel{MasterName: "pubsub-master"}
	s.Master = StartRedis(t)
	s.Replica = StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port))
	waitRedis(t, s.Master.Addr, "replication", "connected_slaves:1")

	var addrs []string
	for range 3 {
		port := FreePort(t)
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %[3]s 1000\n"+
			"sentinel failover-timeout %[3]s 4000\n"+
			"sentinel parallel-syncs %[3]s 1\n", port, dir, s.MasterName, s.Master.Port)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		r := &Redis{
			t: t, Port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port),
			bin: NeedBinary(t, "redis-sentinel"), args: []string{conf}, ready: "+monitor master",
		}
		t.Cleanup(r.Kill)
		r.Start()
		s.Sentinels = append(s.Sentinels, r)
		addrs = append(addrs, r.Addr)
	}
	for _, r := range s.Sentinels {
		waitSentinel(t, r.Addr, s.MasterName, s.Master.Addr, 1)
	}
	s.URL = "redis://" + addrs[0] + "?master_name=" + s.MasterName + "&addr=" + addrs[1] + "&addr=" + addrs[2]
	return s
}

// MasterAddr asks the first Sentinel that answers which address is the
// master now.
func (s *RedisSentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	for _, r := range s.Sentinels {
		c := goredis.NewSentinelClient(&goredis.Options{Addr: r.Addr})
		addr, err := c.GetMasterAddrByName(context.Background(), s.MasterName).Result()
		c.Close()
		if err == nil {
			return addr[0] + ":" + addr[1]
		}
	}
	t.Fatal("no Sentinel answers")
	return ""
}

// waitSentinel waits until the Sentinel at addr names master as the
// master of name with at least replicas replicas.
func waitSentinel(t testing.TB, addr, name, master string, replicas int) {
	t.Helper()
	c := goredis.NewSentinelClient(&goredis.Options{Addr: addr})
	defer c.Close()
	Eventually(t, fmt.Sprintf("sentinel %s sees master %s with %d replicas", addr, master, replicas), func() bool {
		m, err := c.Master(context.Background(), name).Result()
		n, _ := strconv.Atoi(m["num-slaves"])
		return err == nil && m["ip"]+":"+m["port"] == master && n >= replicas
	})
}

// waitRedis waits until INFO section of the server at addr holds want.
func waitRedis(t testing.TB, addr, section, want string) {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	Eventually(t, fmt.Sprintf("redis %s: INFO %s holds %q", addr, section, want), func() bool {
		info, err := c.Info(context.Background(), section).Result()
		return err == nil && strings.Contains(info, want)
	})
}

// RedisCluster is a Redis Cluster of masters without replicas on
// loopback, stopped when the test ends.
type RedisCluster struct {
	Nodes []*Redis
	// URL names every node, as go-redis' cluster URL.
	URL string
}

// StartRedisCluster starts n cluster-enabled redis-servers, joins them
// with redis-cli --cluster create (the slots spread evenly) and returns
// once every node reports the cluster ok.
func StartRedisCluster(t testing.TB, n int) *RedisCluster {
	t.Helper()
	cli := NeedBinary(t, "redis-cli")
	c := new(RedisCluster)
	var addrs []string
	for range n {
		r := StartRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes-{PORT}.conf",
			"--cluster-node-timeout", "2000", "--cluster-port", strconv.Itoa(FreePort(t)))
		c.Nodes = append(c.Nodes, r)
		addrs = append(addrs, r.Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	out, err := exec.Command(cli, append(args, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, r := range c.Nodes {
		waitCluster(t, r.Addr)
	}
	c.URL = "redis://" + addrs[0] + "?addr=" + strings.Join(addrs[1:], "&addr=")
	return c
}

// waitCluster waits until the node at addr says the cluster is ok.
func waitCluster(t testing.TB, addr string) {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	Eventually(t, "cluster node "+addr+" ok", func() bool {
		info, err := c.ClusterInfo(context.Background()).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	})
}

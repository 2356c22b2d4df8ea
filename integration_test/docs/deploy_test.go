package docs_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// A block marked as a file shows that whole file: the deployment files in
// docs/deployment.md are the ones in deploy/.
func TestDocumentedFilesMatch(t *testing.T) {
	n := 0
	for _, doc := range documents(t) {
		for _, b := range blocks(t, doc) {
			verb, path := b.verb()
			if verb != "file" {
				continue
			}
			n++
			want, err := os.ReadFile(fromDoc(doc, path))
			if err != nil {
				t.Errorf("%s: %v", b, err)
				continue
			}
			if b.body != string(want) {
				t.Errorf("%s: the block is not %s as it is now; copy the file into the document", b, path)
			}
		}
	}
	if n < 3 {
		t.Fatalf("found %d file blocks, want the Dockerfile, compose file and Caddyfile", n)
	}
}

// compose is what the test reads of deploy/compose.yaml.
type compose struct {
	Services map[string]struct {
		Build struct {
			Context    string
			Dockerfile string
		}
		Image       string
		Ports       []string
		Environment map[string]string
		Ulimits     struct {
			Nofile struct{ Soft, Hard int }
		}
		Healthcheck struct {
			Test []string
		}
		DependsOn map[string]struct{ Condition string } `yaml:"depends_on"`
	}
}

// The Dockerfile builds this module on Caddy's builder image, and the
// compose file runs it with Redis, agreeing with the Caddyfile they ship:
// the addresses it listens on, the environment it reads, the health check,
// and an open-files limit far above the default 1024. No Docker here: the
// files are read, and the Caddyfile is run by TestDeploymentCaddyfileServes.
func TestDeploymentFilesAgree(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, "deploy", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	dockerfile, caddyfile := read("Dockerfile"), read("Caddyfile")
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	module := strings.TrimPrefix(strings.SplitN(string(gomod), "\n", 2)[0], "module ")

	from := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(dockerfile, -1)
	if len(from) != 2 || from[0][1] != "caddy:2.11-builder" || from[1][1] != "caddy:2.11" {
		t.Errorf("Dockerfile stages: %v, want caddy:2.11-builder then caddy:2.11", from)
	}
	with := regexp.MustCompile(`xcaddy build --with (\S+)=(\S+)`).FindStringSubmatch(dockerfile)
	if with == nil || with[1] != module {
		t.Errorf("Dockerfile's xcaddy line: %v, want --with %s=...", with, module)
	} else if !strings.Contains(dockerfile, "COPY . "+with[2]+"\n") {
		t.Errorf("Dockerfile builds from %s, which no COPY of the source fills", with[2])
	}
	if !strings.Contains(dockerfile, "COPY deploy/Caddyfile /etc/caddy/Caddyfile") {
		t.Error("the image does not carry deploy/Caddyfile")
	}

	var c compose
	if err := yaml.Unmarshal([]byte(read("compose.yaml")), &c); err != nil {
		t.Fatal(err)
	}
	caddy, ok := c.Services["caddy"]
	if !ok || c.Services["redis"].Image == "" {
		t.Fatalf("services: want caddy and redis (an image), got %+v", c.Services)
	}
	if caddy.Build.Context != ".." || caddy.Build.Dockerfile != "deploy/Dockerfile" {
		t.Errorf("caddy builds %+v, want deploy/Dockerfile from the repository's root", caddy.Build)
	}
	if caddy.Ulimits.Nofile.Soft < 65536 || caddy.Ulimits.Nofile.Hard < caddy.Ulimits.Nofile.Soft {
		t.Errorf("ulimits nofile %+v: want a soft limit of at least 65536, under the hard one", caddy.Ulimits.Nofile)
	}
	for _, p := range []string{"80:80", "443:443"} {
		if !strings.Contains(strings.Join(caddy.Ports, " "), p) {
			t.Errorf("caddy publishes %v, without %s", caddy.Ports, p)
		}
	}
	for _, name := range regexp.MustCompile(`\{env\.([A-Z_]+)\}|\{\$([A-Z_]+)`).FindAllStringSubmatch(caddyfile, -1) {
		v := name[1] + name[2]
		if _, ok := caddy.Environment[v]; !ok {
			t.Errorf("the Caddyfile reads %s, which the compose file does not set", v)
		}
	}
	if !strings.HasPrefix(caddy.Environment["REDIS_URL"], "redis://redis:") {
		t.Errorf("REDIS_URL %q is not the redis service", caddy.Environment["REDIS_URL"])
	}
	if caddy.DependsOn["redis"].Condition != "service_healthy" {
		t.Errorf("caddy does not wait for a healthy redis: %+v", caddy.DependsOn)
	}
	check := strings.Join(caddy.Healthcheck.Test, " ")
	url := regexp.MustCompile(`http://127\.0\.0\.1:(\d+)(/\S*)`).FindStringSubmatch(check)
	if url == nil || !strings.Contains(caddyfile, "http://127.0.0.1:"+url[1]+" {") || !strings.Contains(caddyfile, "pubsub "+url[2]+" {") {
		t.Errorf("health check %q is no pubsub endpoint of the Caddyfile's loopback site", check)
	}
}

// The deployment Caddyfile runs: against a real redis-server, on loopback,
// a keyed publish reaches a long-poll on the public site, an unkeyed one is
// refused, and the health check answers 200.
func TestDeploymentCaddyfileServes(t *testing.T) {
	r := testserver.StartRedis(t)
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("REDIS_URL", r.URL)
	t.Setenv("PUBSUB_KEY", "deploy-test-key")
	site := fmt.Sprintf("http://127.0.0.1:%d", testserver.FreePort(t))
	t.Setenv("SITE_ADDRESS", site)
	lb := newServing(t).serve(stringer("deploy/Caddyfile"), string(raw))
	health := lb.rewrite(regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(string(raw))) + "/healthz"

	if code, body, _ := testserver.Request(t, http.MethodPost, site+"/events/lobby", "application/x-www-form-urlencoded", "data=hi", nil); code != http.StatusUnauthorized {
		t.Errorf("publish without the key: %d %s", code, body)
	}
	code, body, _ := testserver.Request(t, http.MethodPost, site+"/events/lobby", "application/x-www-form-urlencoded", "data=hi",
		http.Header{"Authorization": {"Bearer deploy-test-key"}})
	if code != http.StatusOK {
		t.Fatalf("publish with the key: %d %s", code, body)
	}
	if got := testserver.Poll(t, site+"/events/lobby", "earliest"); len(got.Messages) != 1 || got.Messages[0].Data != "hi" || got.Messages[0].Topic != "chat/lobby" {
		t.Errorf("long-poll from the start: %+v", got)
	}
	if code, body, _ := testserver.Request(t, http.MethodGet, health, "", "", nil); code != http.StatusOK {
		t.Errorf("health check %s: %d %s", health, code, body)
	}
}

// stringer names what a failure is about.
type stringer string

func (s stringer) String() string { return string(s) }

package client_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-pubsub/caddy-pubsub/internal/testserver"
)

// clientDir is the client package in the repository.
var clientDir = filepath.Join("..", "..", "client")

// pubsub_client serves the module, the classic build and the declarations
// as they are in client/, with a type browsers accept for scripts, an ETag
// that makes a revalidation cheap, and HEAD; other names go on to the next
// handler, and POST is refused.
func TestClientFilesServed(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub_client /js/*
	respond "next handler" 404
}
`)
	for name, contentType := range map[string]string{
		"pubsub.js":        "text/javascript; charset=utf-8",
		"pubsub.global.js": "text/javascript; charset=utf-8",
		"pubsub.d.ts":      "application/typescript; charset=utf-8",
	} {
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(clientDir, name))
			if err != nil {
				t.Fatal(err)
			}
			u := s.Base + "/js/" + name
			status, body, h := testserver.Request(t, "GET", u, "", "", nil)
			if status != http.StatusOK || body != string(want) {
				t.Fatalf("GET %s: %d, %d bytes; want 200 and the %d bytes of client/%s", u, status, len(body), len(want), name)
			}
			for k, v := range map[string]string{
				"Content-Type":                contentType,
				"Cache-Control":               "no-cache",
				"X-Content-Type-Options":      "nosniff",
				"Access-Control-Allow-Origin": "*",
			} {
				if h.Get(k) != v {
					t.Errorf("%s: %q, want %q", k, h.Get(k), v)
				}
			}
			etag := h.Get("ETag")
			if !strings.HasPrefix(etag, `"`) || len(etag) < 10 {
				t.Fatalf("ETag %q: want a strong ETag", etag)
			}

			status, body, _ = testserver.Request(t, "GET", u, "", "", http.Header{"If-None-Match": {etag}})
			if status != http.StatusNotModified || body != "" {
				t.Errorf("GET with If-None-Match: %d %q, want 304 and no body", status, body)
			}
			status, body, h = testserver.Request(t, "HEAD", u, "", "", nil)
			if status != http.StatusOK || body != "" || h.Get("ETag") != etag || h.Get("Content-Length") != strconv.Itoa(len(want)) {
				t.Errorf("HEAD: %d %q, ETag %q, Content-Length %q", status, body, h.Get("ETag"), h.Get("Content-Length"))
			}
			status, _, h = testserver.Request(t, "POST", u, "text/plain", "x", nil)
			if status != http.StatusMethodNotAllowed || h.Get("Allow") != "GET, HEAD" {
				t.Errorf("POST: %d, Allow %q; want 405 and GET, HEAD", status, h.Get("Allow"))
			}
		})
	}
	for _, path := range []string{"/js/other.js", "/js/", "/pubsub.js"} {
		if status, body, _ := testserver.Request(t, "GET", s.Base+path, "", "", nil); status != http.StatusNotFound || body != "next handler" {
			t.Errorf("GET %s: %d %q, want the next handler's 404", path, status, body)
		}
	}
}

// Without a matcher, pubsub_client serves its names anywhere but under a
// pubsub endpoint: the Caddyfile orders pubsub first, so a topic path that
// ends in pubsub.js stays the endpoint's.
func TestEndpointPathsWinOverClientNames(t *testing.T) {
	s := testserver.Start(t, `
http://127.0.0.1:{PORT} {
	pubsub_client
	pubsub /events/* {
		topic t/{http.request.uri.path.1}
	}
}
`)
	if status, _, h := testserver.Request(t, "GET", s.Base+"/pubsub.js", "", "", nil); status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/javascript") {
		t.Fatalf("GET /pubsub.js: %d %q", status, h.Get("Content-Type"))
	}
	testserver.Publish(t, s.Base+"/events/pubsub.js", url.Values{"data": {"a message, not a script"}})
	answer := testserver.Poll(t, s.Base+"/events/pubsub.js", "earliest")
	if len(answer.Messages) != 1 || answer.Messages[0].Topic != "t/pubsub.js" {
		t.Fatalf("poll of the endpoint: %+v", answer)
	}
}

// pubsub_client takes nothing but a matcher.
func TestClientDirectiveSyntax(t *testing.T) {
	for _, site := range []string{
		"http://127.0.0.1:1 {\n\tpubsub_client /js/* extra\n}\n",
		"http://127.0.0.1:1 {\n\tpubsub_client {\n\t\tversion 1\n\t}\n}\n",
	} {
		if _, err := testserver.Adapt(site); err == nil {
			t.Errorf("adapting %q: no error", site)
		}
	}
	if _, err := testserver.Adapt("http://127.0.0.1:1 {\n\tpubsub_client /js/*\n}\n"); err != nil {
		t.Fatal(err)
	}
}

// Each caddyfile block of docs/client.md and of the package README adapts.
func TestClientDocsCaddyfilesAdapt(t *testing.T) {
	for _, doc := range []string{filepath.Join("..", "..", "docs", "client.md"), filepath.Join(clientDir, "README.md")} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		blocks := strings.Split(string(b), "```caddyfile\n")[1:]
		if len(blocks) == 0 {
			t.Fatalf("%s: no caddyfile block", doc)
		}
		for i, block := range blocks {
			body, _, ok := strings.Cut(block, "```")
			if !ok {
				t.Fatalf("%s: caddyfile block %d is not closed", doc, i+1)
			}
			if _, err := testserver.Adapt(body); err != nil {
				t.Errorf("%s: caddyfile block %d: %v", doc, i+1, err)
			}
		}
	}
}

package pubsub

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"path"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The browser client, built into the module so that the client a page
// loads is always the one of the server it talks to.
//
//go:generate go run ./internal/clientgen
//go:embed client/pubsub.js client/pubsub.global.js client/pubsub.d.ts
var clientFS embed.FS

// clientFile is one file pubsub_client serves.
type clientFile struct {
	body        []byte
	contentType string
	etag        string
}

// clientFiles are the files by name: the ES module, its classic-script
// build and the TypeScript declarations.
var clientFiles = func() map[string]clientFile {
	types := map[string]string{
		"pubsub.js":        "text/javascript; charset=utf-8",
		"pubsub.global.js": "text/javascript; charset=utf-8",
		"pubsub.d.ts":      "application/typescript; charset=utf-8",
	}
	files := make(map[string]clientFile, len(types))
	for name, contentType := range types {
		body, err := clientFS.ReadFile("client/" + name)
		if err != nil {
			panic(err) // the embed directive lists the same names
		}
		sum := sha256.Sum256(body)
		files[name] = clientFile{body: body, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	}
	return files
}()

func init() {
	caddy.RegisterModule(ClientHandler{})
}

// ClientHandler serves the JavaScript client: a request whose path ends in
// /pubsub.js (the ES module), /pubsub.global.js (the classic script that
// defines the global PubSub) or /pubsub.d.ts (TypeScript declarations)
// gets that file, any other request goes to the next handler. A matcher
// puts the files where the site wants them (pubsub_client /js/*).
type ClientHandler struct{}

// CaddyModule returns the Caddy module information.
func (ClientHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.pubsub_client",
		New: func() caddy.Module { return new(ClientHandler) },
	}
}

// ServeHTTP answers GET and HEAD with the file, with a strong ETag and
// Cache-Control: no-cache, so a browser revalidates (a 304 while the file
// is unchanged) and picks up a new client as soon as Caddy has one. The
// files are public code: any origin may load them, as a module script
// from another origin needs.
func (ClientHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	name := path.Base(r.URL.Path)
	f, ok := clientFiles[name]
	if !ok {
		return next.ServeHTTP(w, r)
	}
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "pubsub_client serves "+name+" to GET and HEAD only", http.StatusMethodNotAllowed)
		return nil
	}
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", f.etag)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Access-Control-Allow-Origin", "*")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
	return nil
}

// parseClientCaddyfile sets up pubsub_client, which takes no arguments:
//
//	pubsub_client [<matcher>]
func parseClientCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var c ClientHandler
	return &c, c.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile checks that pubsub_client has no arguments or block.
func (ClientHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("pubsub_client takes no block: it serves the client as it is built into the module")
	}
	return nil
}

var (
	_ caddyhttp.MiddlewareHandler = (*ClientHandler)(nil)
	_ caddyfile.Unmarshaler       = (*ClientHandler)(nil)
)

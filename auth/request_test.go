package auth

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestTokenFromRequest(t *testing.T) {
	tests := []struct {
		name       string
		auth       string // Authorization header
		cookie     string // value of the pubsub_token cookie
		query      string
		cookieName string
		token      string
		source     string
	}{
		{"none", "", "", "", "pubsub_token", "", ""},
		{"header", "Bearer H", "", "", "pubsub_token", "H", FromHeader},
		{"header scheme is case-insensitive", "bearer H", "", "", "pubsub_token", "H", FromHeader},
		{"header wins over cookie and query", "Bearer H", "C", "?access_token=Q", "pubsub_token", "H", FromHeader},
		{"an empty bearer still wins", "Bearer ", "C", "", "pubsub_token", "", FromHeader},
		{"cookie wins over query", "", "C", "?access_token=Q", "pubsub_token", "C", FromCookie},
		{"basic auth is not a token", "Basic dXNlcjpwYXNz", "C", "", "pubsub_token", "C", FromCookie},
		{"query", "", "", "?access_token=Q", "pubsub_token", "Q", FromQuery},
		{"cookie not configured", "", "C", "?access_token=Q", "", "Q", FromQuery},
		{"empty query value", "", "", "?access_token=", "pubsub_token", "", FromQuery},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/events"+tt.query, nil)
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			if tt.cookie != "" {
				r.AddCookie(&http.Cookie{Name: "pubsub_token", Value: tt.cookie})
			}
			token, source := TokenFromRequest(r, tt.cookieName)
			if token != tt.token || source != tt.source {
				t.Fatalf("got %q from %q, want %q from %q", token, source, tt.token, tt.source)
			}
		})
	}
}

// Package integration_test holds caddy-pubsub's end-to-end tests, laid out
// by one rule: one package per feature, in integration_test/<feature>/.
//
// Caddy's state (the running config, its apps and their listeners) is
// global to a process, and so is any admin endpoint on a fixed port, such
// as caddytest's (internal/testserver turns the admin endpoint off rather
// than share one). Each package is its own test binary, so packages run as
// separate processes, side by side, and the tests inside one package run
// one at a time (none calls t.Parallel).
// This directory itself holds no tests, only this rule.
//
// A new test goes into the package of the feature it tells a story about
// (auth, bolt, browser, config, docs, fanout, lifecycle, limits, mqtt,
// observability, publish, redis, transports). A new feature that fits none
// gets a new package: a main_test.go whose package doc says what the
// package covers and whose TestMain calls testserver.Main, and the tests
// beside it.
//
// Helpers live in one helpers_test.go per package, not copied between the
// tests of that package; what several packages need belongs in
// internal/testserver.
//
// Tests start Caddy from Caddyfile text through internal/testserver (in
// this process, or as the built binary where a story needs a separate
// process) and talk to it with real clients over loopback sockets
// (127.0.0.1 or ::1). Outside services (redis-server, mosquitto, chromium)
// are started by the tests themselves on free loopback ports; a test skips
// when the binary is not installed, and fails instead when
// PUBSUB_REQUIRE_SERVICES=1, as in CI.
package integration_test

package handlers

// onOwnStack runs serve on a new goroutine and waits for it; a panic in
// serve is raised again on the caller's goroutine, where net/http and
// Caddy recover it as usual. SSE and WebSocket connections are served
// this way, to keep their memory small. (Not long-polls: a waiting poll
// has made no deep call yet, and its answer ends it.)
//
// Why: a handler runs at the bottom of Caddy's handler chain, about 5.5
// KiB into its goroutine's stack, and its first deeper calls (a map
// growing in Subscribe, the response's WriteHeader) overflow the 8 KiB
// stack, which Go then doubles to 16 KiB; Go shrinks a stack only when
// less than a quarter of it is in use, which the chain alone exceeds, so a
// long-lived stream would keep 16 KiB for its whole life. Here the chain's
// goroutine waits at 8 KiB, and the stream's own goroutine, parked a few
// frames deep between messages, shrinks back to a few KiB.
func onOwnStack(serve func()) {
	done := make(chan struct{})
	var panicked any
	go func() {
		defer func() {
			panicked = recover()
			close(done)
		}()
		serve()
	}()
	<-done
	if panicked != nil {
		panic(panicked)
	}
}

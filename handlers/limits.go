package handlers

// DefaultPollBatch is the default of Limits.PollBatch.
const DefaultPollBatch = 100

// Limits bounds what one request may ask of an endpoint. A zero field takes
// its default.
type Limits struct {
	// Topics caps the topics (filters) of one subscription: a request's
	// ?topic= list, or a WebSocket's topics over all its subscribe
	// frames. Default: MaxTopicsPerRequest.
	Topics int
	// Batch caps the messages of one publish: a JSON array, or a
	// WebSocket publish frame's "messages". Default: MaxBatch.
	Batch int
	// PollBatch caps the messages of one long-poll answer; its last_id
	// lets the next poll continue where it stopped. Default:
	// DefaultPollBatch.
	PollBatch int
}

func (l Limits) topics() int    { return orDefault(l.Topics, MaxTopicsPerRequest) }
func (l Limits) batch() int     { return orDefault(l.Batch, MaxBatch) }
func (l Limits) pollBatch() int { return orDefault(l.PollBatch, DefaultPollBatch) }

func orDefault(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

package client

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestRetryablePublish: what the asynchronous publish answers when a copy
// is lost, or held up, is sent again; a refusal by the stream is not.
func TestRetryablePublish(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{nats.ErrDisconnected, true},
		{fmt.Errorf("publish: %w", nats.ErrDisconnected), true},
		{jetstream.ErrNoStreamResponse, true},
		{nats.ErrNoResponders, true},
		{jetstream.ErrAsyncPublishTimeout, true},
		{jetstream.ErrTooManyStalledMsgs, true},
		{nats.ErrReconnectBufExceeded, true},
		{&jetstream.APIError{Code: 409, ErrorCode: 10158, Description: "duplicate message id is in process"}, true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10054, Description: "message size exceeds maximum allowed"}, false},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages exceeded"}, false},
		{jetstream.ErrInvalidJSAck, false},
		{nats.ErrConnectionClosed, false},
		{nats.ErrPermissionViolation, false},
		{context.Canceled, false},
		{errors.New("something else"), false},
	}
	for _, tt := range tests {
		if got := retryablePublish(tt.err); got != tt.want {
			t.Errorf("retryablePublish(%v) = %v; want %v", tt.err, got, tt.want)
		}
	}
}

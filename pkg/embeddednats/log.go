package embeddednats

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// logAdapter implements server.Logger on top of log/slog. It also records
// the first fatal message, because nats-server reports startup failures
// (a port in use, JetStream unable to start) through Fatalf and expects the
// logger to end the process; embedded, the error is returned instead.
type logAdapter struct {
	log *slog.Logger

	mu    sync.Mutex
	fatal string
}

// newLogAdapter wraps l; a nil l discards everything.
func newLogAdapter(l *slog.Logger) *logAdapter {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &logAdapter{log: l}
}

// debugEnabled reports whether debug lines would be kept, so that the
// server only produces them when they are wanted.
func (a *logAdapter) debugEnabled() bool {
	return a.log.Enabled(context.Background(), slog.LevelDebug)
}

// fatalMessage returns the first fatal message logged, or "".
func (a *logAdapter) fatalMessage() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fatal
}

func (a *logAdapter) emit(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if !a.log.Enabled(ctx, level) {
		return
	}
	a.log.LogAttrs(ctx, level, "nats-server", slog.String("text", fmt.Sprintf(format, v...)))
}

// Noticef logs at info level.
func (a *logAdapter) Noticef(format string, v ...any) { a.emit(slog.LevelInfo, format, v) }

// Warnf logs at warn level.
func (a *logAdapter) Warnf(format string, v ...any) { a.emit(slog.LevelWarn, format, v) }

// Errorf logs at error level.
func (a *logAdapter) Errorf(format string, v ...any) { a.emit(slog.LevelError, format, v) }

// Debugf logs at debug level.
func (a *logAdapter) Debugf(format string, v ...any) { a.emit(slog.LevelDebug, format, v) }

// Tracef logs at debug level; protocol tracing is never switched on by
// StartServer, so this is only reached by explicit server calls.
func (a *logAdapter) Tracef(format string, v ...any) { a.emit(slog.LevelDebug, format, v) }

// Fatalf logs at error level and records the message for StartServer.
func (a *logAdapter) Fatalf(format string, v ...any) {
	text := fmt.Sprintf(format, v...)
	a.log.LogAttrs(context.Background(), slog.LevelError, "nats-server", slog.String("text", text), slog.Bool("fatal", true))
	a.mu.Lock()
	if a.fatal == "" {
		a.fatal = text
	}
	a.mu.Unlock()
}

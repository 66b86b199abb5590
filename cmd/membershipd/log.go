package main

import (
	"log"
	"log/slog"
	"net/url"
	"strings"
)

// newSlogger returns a structured logger that writes through logger, so
// structured lines carry the same time stamp and prefix as the plain ones:
//
//	2026/06/07 15:09:56 [membershipd] level=WARN msg="nats error" err=…
func newSlogger(logger *log.Logger, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{logger}, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{} // logger stamps the time
			}
			return a
		},
	}))
}

// natsLogger is the logger of the embedded nats-server. Its notices (banner,
// listeners, JetStream limits) are many, so they show only at debug level;
// warnings and errors always do.
func natsLogger(logger *log.Logger, level slog.Level) *slog.Logger {
	if level > slog.LevelDebug {
		level = max(level, slog.LevelWarn)
	}
	return newSlogger(logger, level).With("component", "nats")
}

// logWriter turns each write of a slog handler (one record, one line) into
// one line of a standard logger.
type logWriter struct{ l *log.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	if err := w.l.Output(2, strings.TrimSuffix(string(p), "\n")); err != nil {
		return 0, err
	}
	return len(p), nil
}

// redactURL hides the password of every URL in a NATS server list.
func redactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

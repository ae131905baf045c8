package service

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/outposthq/outpost/libs/telemetry"
)

// NewLogger returns a JSON slog logger at the named level ("debug", "info",
// "warn", "error"), tagged with the service name. A record logged with a
// context that holds a span carries its trace_id.
func NewLogger(w io.Writer, service, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(defaultString(level, "info")))); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})
	return slog.New(telemetry.LogHandler(h)).With("service", service), nil
}

func defaultString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

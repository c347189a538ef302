package uplink

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// paho's loggers are package variables shared by every client in the
// process, read by paho's goroutines at any time. They are set once, to
// log.Loggers (slog.NewLogLogger) over a handler that forwards to the logger
// of the most recently created Client; swapping that target is atomic, so a
// later New never races with paho.
var (
	pahoTarget   atomic.Pointer[slog.Logger]
	pahoInstall  sync.Once
	pahoSilenced = slog.New(slog.DiscardHandler)
)

func installPahoLogger(l *slog.Logger) {
	pahoTarget.Store(l)
	pahoInstall.Do(func() {
		h := forwardHandler{}.WithAttrs([]slog.Attr{slog.String("component", "paho")})
		// paho reports every failed attempt and every ordinary disconnect as
		// ERROR, while the uplink logs the authoritative error itself, once:
		// at warning level paho would double each outage line in the journal.
		// Its ERROR and WARN are debug detail here; CRITICAL stays an error.
		mqtt.CRITICAL = slog.NewLogLogger(h, slog.LevelError)
		mqtt.ERROR = slog.NewLogLogger(h, slog.LevelDebug)
		mqtt.WARN = slog.NewLogLogger(h, slog.LevelDebug)
	})
}

// forwardHandler sends records to the handler of pahoTarget at the time of
// logging, applying the attributes and groups it was derived with.
type forwardHandler struct {
	derive []func(slog.Handler) slog.Handler
}

func (f forwardHandler) target() slog.Handler {
	l := pahoTarget.Load()
	if l == nil {
		l = pahoSilenced
	}
	h := l.Handler()
	for _, d := range f.derive {
		h = d(h)
	}
	return h
}

func (f forwardHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return f.target().Enabled(ctx, level)
}

func (f forwardHandler) Handle(ctx context.Context, r slog.Record) error {
	return f.target().Handle(ctx, r)
}

func (f forwardHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return f.with(func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) })
}

func (f forwardHandler) WithGroup(name string) slog.Handler {
	return f.with(func(h slog.Handler) slog.Handler { return h.WithGroup(name) })
}

func (f forwardHandler) with(d func(slog.Handler) slog.Handler) forwardHandler {
	derive := make([]func(slog.Handler) slog.Handler, len(f.derive), len(f.derive)+1)
	copy(derive, f.derive)
	return forwardHandler{derive: append(derive, d)}
}

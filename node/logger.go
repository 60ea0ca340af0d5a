package node

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/lni/dragonboat/v4/logger"
)

// Dragonboat's logger is process-global; every node of the process shares
// this adapter, which forwards to the logger of the most recently started node.
var (
	dbLoggerOnce sync.Once
	dbLogger     atomic.Pointer[slog.Logger]
)

// dragonboatMinLevel keeps Dragonboat's chatty INFO lines out unless the
// process logs at debug level.
func installDragonboatLogger(l *slog.Logger) {
	dbLogger.Store(l)
	dbLoggerOnce.Do(func() {
		logger.SetLoggerFactory(func(pkg string) logger.ILogger { return &dbAdapter{pkg: pkg} })
	})
}

type dbAdapter struct{ pkg string }

func (a *dbAdapter) log(level slog.Level, format string, args ...interface{}) {
	l := dbLogger.Load()
	if l == nil {
		return
	}
	min := slog.LevelWarn
	if l.Enabled(context.Background(), slog.LevelDebug) {
		min = slog.LevelInfo
	}
	if level < min || !l.Enabled(context.Background(), level) {
		return
	}
	l.Log(context.Background(), level, fmt.Sprintf(format, args...), "component", "dragonboat", "pkg", a.pkg)
}

func (a *dbAdapter) SetLevel(logger.LogLevel) {}
func (a *dbAdapter) Debugf(format string, args ...interface{}) {
	a.log(slog.LevelDebug, format, args...)
}
func (a *dbAdapter) Infof(format string, args ...interface{}) { a.log(slog.LevelInfo, format, args...) }
func (a *dbAdapter) Warningf(format string, args ...interface{}) {
	a.log(slog.LevelWarn, format, args...)
}
func (a *dbAdapter) Errorf(format string, args ...interface{}) {
	a.log(slog.LevelError, format, args...)
}
func (a *dbAdapter) Panicf(format string, args ...interface{}) {
	a.log(slog.LevelError, format, args...)
	panic(fmt.Sprintf(format, args...))
}

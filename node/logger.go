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
//
// Levels: Dragonboat's WARNING and ERROR are slog's WARN and ERROR; its INFO
// is chatty (every connection, every snapshot step) and goes to DEBUG; its
// DEBUG goes below that (slog.LevelDebug-4), where no usual handler looks.
// Known messages that a healthy cluster logs in normal operation take the
// level dragonboatLevels gives them instead, so that WARN keeps meaning
// "look at this".
var (
	dbLoggerOnce sync.Once
	dbLogger     atomic.Pointer[slog.Logger]
)

func installDragonboatLogger(l *slog.Logger) {
	dbLogger.Store(l)
	dbLoggerOnce.Do(func() {
		logger.SetLoggerFactory(func(pkg string) logger.ILogger { return &dbAdapter{pkg: pkg} })
	})
}

// dbMessage names a Dragonboat message: its logger's name and its format
// string, word for word (logger_test.go checks them against Dragonboat's
// source).
type dbMessage struct{ pkg, format string }

// dragonboatLevels are the levels of Dragonboat messages that are no
// warning in a healthy cluster. An election shows at INFO by its
// milestones, its votes at DEBUG; a ReadIndex dropped before a leader is
// known (or before a new leader committed an entry of its term) is what
// catch-up and readiness retry, at DEBUG; so is the warning of the first
// stale read, which is what a serializable read is. Anything else keeps
// Dragonboat's level: a lost quorum, a dropped proposal, an unreachable peer.
var dragonboatLevels = map[dbMessage]slog.Level{
	{"raft", "%s became PreVote candidate"}:                              slog.LevelInfo,
	{"raft", "%s became candidate"}:                                      slog.LevelInfo,
	{"raft", "%s became leader"}:                                         slog.LevelInfo,
	{"raft", "%s become follower after receiving higher term from %s"}:   slog.LevelInfo,
	{"raft", "%s become followerKE after receiving higher term from %s"}: slog.LevelInfo,

	{"raft", "%s sent RequestPreVote to %s"}:                                          slog.LevelDebug,
	{"raft", "%s sent RequestVote to %s"}:                                             slog.LevelDebug,
	{"raft", "%s received %s from %s"}:                                                slog.LevelDebug,
	{"raft", "%s received %s rejection from %s"}:                                      slog.LevelDebug,
	{"raft", "%s received %d preVotes and %d rejections, quorum is %d"}:               slog.LevelDebug,
	{"raft", "%s received %d votes and %d rejections, quorum is %d"}:                  slog.LevelDebug,
	{"raft", "%s received %s with higher term (%d) from %s"}:                          slog.LevelDebug,
	{"raft", "%s cast preVote from %s index %d term %d, log term: %d"}:                slog.LevelDebug,
	{"raft", "%s cast vote from %s index %d term %d, log term: %d"}:                   slog.LevelDebug,
	{"raft", "%s rejected preVote %s index %d term %d,logterm %d, utd %t"}:            slog.LevelDebug,
	{"raft", "%s rejected vote %s index%d term%d,logterm%d,grant%v,utd%v"}:            slog.LevelDebug,
	{"raft", "%s dropped RequestVote at term %d from %s, leader available"}:           slog.LevelDebug,
	{"raft", "%s dropped ReadIndex, no leader"}:                                       slog.LevelDebug,
	{"raft", "%s dropped read index, no leader"}:                                      slog.LevelDebug,
	{"raft", "%s dropped ReadIndex, not ready"}:                                       slog.LevelDebug,
	{"dragonboat", "StaleRead called, linearizability not guaranteed for stale read"}: slog.LevelDebug,
}

type dbAdapter struct{ pkg string }

func (a *dbAdapter) log(level slog.Level, format string, args ...interface{}) {
	l := dbLogger.Load()
	if l == nil {
		return
	}
	if known, ok := dragonboatLevels[dbMessage{a.pkg, format}]; ok {
		level = known
	}
	if !l.Enabled(context.Background(), level) {
		return
	}
	l.Log(context.Background(), level, fmt.Sprintf(format, plainErrors(args)...), "component", "dragonboat", "pkg", a.pkg)
}

// plainErrors replaces each error among args by its message. Dragonboat
// formats some errors with %+v, which for its errors
// (github.com/cockroachdb/errors) is the stack of where they were made.
func plainErrors(args []interface{}) []interface{} {
	out := make([]interface{}, len(args))
	for i, arg := range args {
		if err, ok := arg.(error); ok {
			arg = err.Error()
		}
		out[i] = arg
	}
	return out
}

func (a *dbAdapter) SetLevel(logger.LogLevel) {}
func (a *dbAdapter) Debugf(format string, args ...interface{}) {
	a.log(slog.LevelDebug-4, format, args...)
}
func (a *dbAdapter) Infof(format string, args ...interface{}) {
	a.log(slog.LevelDebug, format, args...)
}
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

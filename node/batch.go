package node

import (
	"context"
	"sync"

	"github.com/kvd-project/kvd/statemachine"
)

// Batching limits: one Raft entry carries at most batchMaxCmds commands and,
// unless a single command is larger, batchMaxBytes of keys and values.
// batchMaxInflight proposals are in flight at once; while they are, new
// writes queue and leave together in the next entry (group commit). With
// one caller nothing queues, so a lone write pays no extra latency.
const (
	batchMaxCmds     = 512
	batchMaxBytes    = 1 << 20
	batchMaxInflight = 4
)

// write is one command waiting in the batcher.
type write struct {
	ctx  context.Context
	cmd  statemachine.Command
	res  statemachine.Result
	err  error
	done chan struct{}
}

// batcher coalesces writes from concurrent callers into shared proposals.
// Two commands that write the same key never share an entry: a key's mod
// revision (the entry's index) must name exactly one write, or a client
// holding it could compare-and-swap over a write it never saw.
//
// Its proposers are goroutines it owns: they propose under ctx (the node's
// lifetime, not a caller's: one caller giving up must not cancel an entry
// that carries others' writes), and stop waits for them.
type batcher struct {
	ctx     context.Context
	propose func(ctx context.Context, cmds []statemachine.Command) ([]statemachine.Result, error)
	// observe, if set, is told the size of each batch proposed.
	observe func(n int)

	wg       sync.WaitGroup
	mu       sync.Mutex
	queue    []*write
	inflight int
	stopped  bool
}

// submit queues ws and makes sure a proposer runs. After stop, ws fail
// with ErrStopped at once.
func (b *batcher) submit(ws []*write) {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		for _, w := range ws {
			w.err = ErrStopped
			close(w.done)
		}
		return
	}
	b.queue = append(b.queue, ws...)
	start := b.inflight < batchMaxInflight
	if start {
		b.inflight++
		b.wg.Add(1) // under mu: never concurrent with stop's Wait
	}
	b.mu.Unlock()
	if start {
		go func() {
			defer b.wg.Done()
			b.run()
		}()
	}
}

// stop refuses new writes and waits for the proposers, which end once the
// queue is drained (with ctx cancelled, quickly: every proposal fails).
func (b *batcher) stop() {
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
	b.wg.Wait()
}

// run proposes batches until the queue is empty.
func (b *batcher) run() {
	keys := make(map[string]struct{})
	var cmds []statemachine.Command
	for {
		b.mu.Lock()
		batch := b.take(keys)
		if len(batch) == 0 {
			b.inflight--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		cmds = cmds[:0]
		for _, w := range batch {
			cmds = append(cmds, w.cmd)
		}
		if b.observe != nil {
			b.observe(len(cmds))
		}
		res, err := b.propose(b.ctx, cmds)
		for i, w := range batch {
			if err != nil {
				w.err = err
			} else {
				w.res = res[i]
			}
			close(w.done)
		}
	}
}

// take removes the next batch from the queue: writes in order until one
// writes a key already in the batch or a limit is reached. Writes whose
// caller has given up are answered with its context error (they were never
// proposed). Called with mu held.
func (b *batcher) take(keys map[string]struct{}) []*write {
	clear(keys)
	var batch []*write
	size, i := 0, 0
	for ; i < len(b.queue); i++ {
		w := b.queue[i]
		if err := w.ctx.Err(); err != nil {
			w.err = err
			close(w.done)
			continue
		}
		n := cmdBytes(w.cmd)
		if len(batch) > 0 && (len(batch) == batchMaxCmds || size+n > batchMaxBytes || conflicts(keys, w.cmd)) {
			break
		}
		for _, op := range w.cmd.Ops {
			keys[string(op.Key)] = struct{}{}
		}
		batch = append(batch, w)
		size += n
	}
	rest := copy(b.queue, b.queue[i:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	return batch
}

func conflicts(keys map[string]struct{}, cmd statemachine.Command) bool {
	for _, op := range cmd.Ops {
		if _, ok := keys[string(op.Key)]; ok {
			return true
		}
	}
	return false
}

func cmdBytes(cmd statemachine.Command) int {
	n := 0
	for _, c := range cmd.Compares {
		n += len(c.Key) + 10
	}
	for _, op := range cmd.Ops {
		n += len(op.Key) + len(op.Value) + 12
	}
	return n
}

// Write replicates cmd, possibly in one Raft entry with concurrent writes of
// other keys, and returns its result once the entry is committed and
// applied. If ctx ends first, the write may still be applied.
func (n *Node) Write(ctx context.Context, cmd statemachine.Command) (statemachine.Result, error) {
	res, errs := n.WriteAll(ctx, []statemachine.Command{cmd})
	return res[0], errs[0]
}

// WriteAll is Write for many independent commands: each may land in a
// different entry and fails or succeeds on its own. It returns when every
// one has its outcome or ctx ends (the rest then get ctx's error).
func (n *Node) WriteAll(ctx context.Context, cmds []statemachine.Command) ([]statemachine.Result, []error) {
	res := make([]statemachine.Result, len(cmds))
	errs := make([]error, len(cmds))
	if n.stopped.Load() {
		for i := range errs {
			errs[i] = ErrStopped
		}
		return res, errs
	}
	ws := make([]*write, len(cmds))
	for i, cmd := range cmds {
		ws[i] = &write{ctx: ctx, cmd: cmd, done: make(chan struct{})}
	}
	n.batch.submit(ws)
	for i, w := range ws {
		select {
		case <-w.done:
			res[i], errs[i] = w.res, w.err
		case <-ctx.Done():
			errs[i] = ctx.Err()
		}
	}
	return res, errs
}

// Package workpool runs functions on goroutines it keeps between calls.
//
// A goroutine starts with a small stack and grows it by copying as calls
// nest; a handler that decodes a message, encodes a record and publishes
// does so on every call when each call has a goroutine of its own. A
// worker kept for the next call keeps the stack it grew, so only the
// first calls pay for it. Workers that wait longer than the idle time
// exit, so a burst leaves no goroutines behind.
package workpool

import (
	"sync"
	"time"
)

// DefaultIdle is how long a worker waits for its next call before it exits.
const DefaultIdle = 10 * time.Second

// Pool runs functions on kept goroutines. Its zero value is not usable;
// create one with New. Go is safe for concurrent use.
type Pool struct {
	work chan func()
	done chan struct{}
	idle time.Duration
	wg   sync.WaitGroup
	once sync.Once
}

// New returns a pool whose workers exit after waiting idle for their next
// call (DefaultIdle when idle is not positive).
func New(idle time.Duration) *Pool {
	if idle <= 0 {
		idle = DefaultIdle
	}
	return &Pool{work: make(chan func()), done: make(chan struct{}), idle: idle}
}

// Go runs fn on a waiting worker, or on a new one when none is waiting: it
// never waits for a worker to free up, so callers bound their own
// concurrency, and the pool holds at most as many workers as calls ran at
// once. Go must not be called once Close has been called. A nil pool runs
// each call on a goroutine of its own.
func (p *Pool) Go(fn func()) {
	if p == nil {
		go fn()
		return
	}
	select {
	case p.work <- fn:
	default:
		p.wg.Add(1)
		go p.worker(fn)
	}
}

func (p *Pool) worker(fn func()) {
	defer p.wg.Done()
	idle := time.NewTimer(p.idle)
	defer idle.Stop()
	for {
		fn()
		idle.Reset(p.idle)
		select {
		case fn = <-p.work:
		case <-idle.C:
			return
		case <-p.done:
			return
		}
	}
}

// Close makes the waiting workers exit and waits for the busy ones to
// finish their call. It is safe to call more than once, and on a nil pool.
func (p *Pool) Close() {
	if p == nil {
		return
	}
	p.once.Do(func() { close(p.done) })
	p.wg.Wait()
}

// Group runs calls on Pool and waits for them, as sync.WaitGroup.Go does
// on goroutines of their own; with a nil Pool it is exactly that. A Group
// must not be copied after first use.
type Group struct {
	Pool *Pool
	wg   sync.WaitGroup
}

// Go runs fn on the group's pool.
func (g *Group) Go(fn func()) {
	g.wg.Add(1)
	g.Pool.Go(func() {
		defer g.wg.Done()
		fn()
	})
}

// Wait waits for every call the group ran.
func (g *Group) Wait() { g.wg.Wait() }

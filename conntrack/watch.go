package conntrack

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// Watch reports events to handle until ctx ends (then it returns nil) or the
// watch cannot go on (the namespace was deleted: an error wrapping
// [ErrNetNSGone]; or netlink failed). handle runs on Watch's goroutine; while
// it runs, events queue in the kernel, so it should be quick. Watch leaves no
// goroutine behind when it returns.
func Watch(ctx context.Context, handle func(Event), opts ...Option) error {
	o := collect(opts)
	k, err := open(o)
	if err != nil {
		return err
	}
	defer k.close()

	w := &watcher{o: o, k: k, handle: handle, known: map[expKey]Expectation{}, masters: map[Tuple]master{}}
	l, err := listen(k, o.readBuffer)
	if err != nil {
		return err
	}
	defer func() {
		if l != nil {
			l.close()
		}
	}()
	// Listen first, then list, so that nothing falls between the two.
	if err := w.resync(ctx, false); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if o.ready != nil {
		o.ready()
	}

	tick := time.NewTicker(o.nsPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-l.msgs:
			w.message(m)
		case err := <-l.errs:
			if !errors.Is(err, syscall.ENOBUFS) {
				if gone := k.gone(); gone != nil {
					return gone
				}
				return &Error{Op: "watch conntrack events", Err: err}
			}
			// The kernel dropped events; start afresh and resynchronise.
			l.close()
			next, err := listen(k, o.readBuffer)
			if err != nil {
				l = nil
				return err
			}
			l = next
			if err := w.resync(ctx, true); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		case now := <-tick.C:
			w.forget(now.Add(-masterMemory))
			if gone := k.gone(); gone != nil {
				return gone
			}
		}
	}
}

// watcher holds what a watch knows.
type watcher struct {
	o      options
	k      ctnetlink // nil in tests of the watcher alone
	handle func(Event)
	// known are the live expectations by key.
	known map[expKey]Expectation
	// masters maps a control connection to its helper, learned from
	// expectations, control connections' NEW events and kernel lookups, to
	// name the helper of related connections.
	masters map[Tuple]master
}

func (w *watcher) wanted(helper string) bool { return keeps(w.o.helper, helper) }

// message handles one event message from the kernel.
func (w *watcher) message(m netlink.Message) {
	sub, typ := m.Header.Type>>8, m.Header.Type&0xff
	if sub == unix.NFNL_SUBSYS_CTNETLINK_EXP && (typ == ipctnlMsgExpNew || typ == ipctnlMsgExpDelete) {
		x, err := decodeExpectation(m.Data)
		if err != nil {
			return
		}
		if typ == ipctnlMsgExpNew {
			w.known[key(x)] = x
			w.remember(x.Master, x.Helper)
			if w.wanted(x.Helper) {
				w.handle(Event{Type: EventNew, Expectation: &x})
			}
			return
		}
		delete(w.known, key(x))
		if w.wanted(x.Helper) {
			w.handle(Event{Type: EventDestroy, Expectation: &x})
		}
		return
	}
	if sub != unix.NFNL_SUBSYS_CTNETLINK || !mayRelate(m.Data) {
		return
	}
	var ev ct.Event
	if err := ev.Unmarshal(m); err != nil || ev.Type != ct.EventNew || ev.Flow == nil {
		return
	}
	if ev.Flow.Helper.Name != "" {
		// A control connection that got a helper.
		w.remember(tupleOf(ev.Flow.TupleOrig), ev.Flow.Helper.Name)
	}
	r, ok := relatedOf(*ev.Flow)
	if !ok {
		return
	}
	r.Helper = w.helperOf(r.Master)
	if w.wanted(r.Helper) {
		w.handle(Event{Type: EventRelated, Related: &r})
	}
}

// helperOf names the helper of a control connection: from the expectations
// seen, or else by asking the kernel for the master connection.
func (w *watcher) helperOf(t Tuple) string {
	if m, ok := w.masters[t]; ok {
		return m.helper
	}
	if w.k == nil {
		return ""
	}
	helper, err := w.k.helperOf(t)
	if err != nil {
		return ""
	}
	w.remember(t, helper)
	return helper
}

// remember notes that control connection t has helper.
func (w *watcher) remember(t Tuple, helper string) {
	w.masters[t] = master{helper, time.Now()}
}

// master is what a watch remembers of a control connection.
type master struct {
	helper string
	seen   time.Time
}

// masterMemory is how long a control connection's helper is remembered after
// its last expectation: long enough for the data connection to arrive.
const masterMemory = 2 * time.Minute

// forget drops control connections that have no live expectation and were
// last seen before cutoff, so a long watch does not grow.
func (w *watcher) forget(cutoff time.Time) {
	live := map[Tuple]bool{}
	for _, x := range w.known {
		live[x.Master] = true
	}
	for t, m := range w.masters {
		if !live[t] && m.seen.Before(cutoff) {
			delete(w.masters, t)
		}
	}
}

// listener is one subscription to conntrack events: a goroutine reads the
// socket and hands over messages, or the error that ended it.
type listener struct {
	conn    events
	msgs    chan netlink.Message
	errs    chan error
	done    chan struct{} // closed to stop the goroutine
	stopped chan struct{} // closed when it has stopped
}

// watchGroups are the multicast groups a watch joins: new connections (for
// related data connections), new and destroyed expectations.
var watchGroups = []netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTExpNew, netfilter.GroupCTExpDestroy}

func listen(k ctnetlink, readBuffer int) (*listener, error) {
	nc, err := k.subscribe(watchGroups, readBuffer)
	if err != nil {
		return nil, err
	}
	l := &listener{conn: nc, msgs: make(chan netlink.Message, 64), errs: make(chan error, 1), done: make(chan struct{}), stopped: make(chan struct{})}
	go l.read()
	return l, nil
}

// read receives until the socket fails or is closed.
func (l *listener) read() {
	defer close(l.stopped)
	for {
		ms, err := l.conn.Receive()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.done:
			}
			return
		}
		for _, m := range ms {
			select {
			case l.msgs <- m:
			case <-l.done:
				return
			}
		}
	}
}

// close closes the socket and waits for the goroutine to stop.
func (l *listener) close() {
	close(l.done)
	l.conn.Close()
	<-l.stopped
}

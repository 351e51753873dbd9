package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/ftpnft/ftpnft/conntrack"
	"github.com/ftpnft/ftpnft/nft"
)

// The daemon's back-off. Repairs of another writer's changes are immediate
// up to fightBurst of them within fightWindow (a script that flushes the
// ruleset twenty times gets its table back twenty times at once); beyond,
// two managers are fighting over the table, and each repair waits twice
// as long as the one before, from fightFirst up to fightMax, until the
// other writer has been quiet for a fightWindow. A failed apply is retried
// with the same growing wait.
const (
	fightWindow = 10 * time.Second
	fightBurst  = 30
	fightFirst  = 250 * time.Millisecond
	fightMax    = time.Minute
)

// daemon applies the configuration and keeps it applied: it listens to the
// kernel's announcements of committed batches and, when one touched its
// table (deleted by `nft flush ruleset`, a rule deleted by hand, a
// firewalld reload that rebuilt the ruleset), applies the configuration
// again by difference. SIGHUP reads the configuration again; SIGTERM and
// SIGINT end it with the table left in place.
func daemon(ctx context.Context, args []string, o *cliOptions, stderr io.Writer) int {
	log := newLogger(o.logFormat, stderr)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	d := &daemonState{log: log, notify: newNotifier(), o: o, wake: make(chan struct{}, 1), pid: uint32(os.Getpid())}
	if o.metrics != "" {
		d.scrape = newScraper(ctx, o, func(what string, err error) { log.Warn("metrics: cannot read "+what, "err", err) })
		d.metrics = newMetrics(d.scrape)
		healthy := func(ctx context.Context) (bool, error) {
			o := d.scrape.options()
			return nft.Holds(ctx, o.ruleset, o.nftOptions()...)
		}
		if err := serveMetrics(ctx, o.metrics, d.metrics, healthy, log); err != nil {
			log.Error("cannot serve metrics", "listen", o.metrics, "err", err)
			return exitFailure
		}
		// Expectation events are counted as they come: nothing polls.
		go func() {
			err := conntrack.Watch(ctx, d.metrics.event, o.conntrackOptions()...)
			if err != nil && ctx.Err() == nil {
				log.Error("metrics: cannot follow expectation events", "err", err)
			}
		}()
		log.Info("serving metrics", "listen", o.metrics)
	}
	watchDone := make(chan error, 1)
	go func() { watchDone <- nft.WatchCommits(ctx, o.cfg.Table, d.commit, o.nftOptions()...) }()
	log.Info("starting", "table", "inet "+o.cfg.Table, "netns", o.netnsArg, "ports", join(o.cfg.Ports), "roles", join(o.cfg.Roles))

	var retry *time.Timer // armed while a repair waits out its back-off
	var retryC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			d.notify.send("STOPPING=1", "STATUS=stopping; the table stays in place")
			log.Info("stopping; the table stays in place", "table", "inet "+o.cfg.Table)
			<-watchDone
			return exitOK
		case err := <-watchDone:
			log.Error("cannot follow the ruleset's changes", "err", err)
			d.notify.send("STATUS=cannot follow the ruleset's changes: " + err.Error())
			return exitFailure
		case <-hup:
			d.reload(ctx, args)
		case <-d.wake:
			if retry != nil {
				continue // the back-off's timer will apply
			}
			if wait := time.Until(d.notBefore); wait > 0 {
				retry = time.NewTimer(wait)
				retryC = retry.C
				continue
			}
			if !d.apply(ctx, "retry") {
				return exitFailure
			}
		case <-retryC:
			retry, retryC = nil, nil
			if !d.apply(ctx, "retry") {
				return exitFailure
			}
		}
	}
}

// daemonState is what the daemon's loop keeps between events.
type daemonState struct {
	log     *slog.Logger
	notify  *notifier
	metrics *metrics // nil without --metrics-listen
	scrape  *scraper
	o       *cliOptions // the configuration in force
	pid     uint32      // this process: its own batches are not news

	mu      sync.Mutex // guards pending, written by the watch's goroutine
	pending []nft.Commit
	wake    chan struct{} // signalled when pending gets a commit

	// bans are the table's bans as last read, and when: another program
	// that deletes the table (nft flush ruleset) deletes them with it,
	// and the daemon puts them back.
	bans   []nft.Ban
	bansAt time.Time

	ready     bool        // the first apply succeeded
	applied   int         // batches sent
	fixes     []time.Time // repairs of other writers' changes within fightWindow
	delay     time.Duration
	notBefore time.Time // the back-off: no apply before then
}

// commit takes an announcement from the watch: one that touched the table,
// lost announcements or the watch's start call for an apply; the daemon's
// own batches and those of other tables do not.
func (d *daemonState) commit(c nft.Commit) {
	if !c.Start && !c.Lost && (!c.Touched || d.own(c.PID)) {
		return
	}
	d.mu.Lock()
	d.pending = append(d.pending, c)
	d.mu.Unlock()
	d.retryLater()
}

// own reports whether pid, which the kernel reports as the committing
// task's (a thread of a process), is a thread of this process.
func (d *daemonState) own(pid uint32) bool {
	if pid == d.pid {
		return true
	}
	_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", pid))
	return err == nil
}

// apply applies the configuration and logs why: the announcements taken
// since the last apply say it (start, drift, lost: announcements were lost), or else
// reason does. It reports false when the daemon cannot go on (its first
// apply failed).
func (d *daemonState) apply(ctx context.Context, reason string) bool {
	d.mu.Lock()
	why := d.pending
	d.pending = nil
	d.mu.Unlock()
	var writer nft.Commit
	for _, c := range why {
		switch {
		case c.Start:
			reason = "start"
		case c.Lost && reason != "start":
			reason = "lost"
		case c.Touched && reason != "start":
			reason, writer = "drift", c
		}
	}
	start := time.Now()
	res, err := nft.Apply(ctx, d.o.ruleset, d.o.nftOptions()...)
	took := time.Since(start)
	if d.metrics != nil {
		d.metrics.applied(reason, took, err)
	}
	attrs := []any{"table", "inet " + d.o.cfg.Table, "reason", reason, "took", took.Round(time.Microsecond).String()}
	if writer.PID != 0 {
		attrs = append(attrs, "writer_pid", writer.PID, "writer", writer.Process)
	}
	if err != nil {
		if ctx.Err() != nil {
			return true
		}
		d.backOff(time.Now())
		d.log.Error("apply failed", append(attrs, "err", err, "retry_in", d.delay.String())...)
		d.notify.send("STATUS=apply failed: " + err.Error())
		if !d.ready {
			return false
		}
		d.retryLater()
		return true
	}
	if res.StateErr != nil {
		d.log.Warn("could not record the address sets", "err", res.StateErr)
	}
	d.keepBans(ctx, res.Plan.Create && d.ready)
	if res.Changed {
		d.applied++
		now := time.Now()
		if writer.PID != 0 {
			d.fixes = append(slices.DeleteFunc(d.fixes, func(t time.Time) bool { return now.Sub(t) > fightWindow }), now)
		}
		if len(d.fixes) > fightBurst {
			// Two managers fighting over the table: never a tight loop.
			d.backOff(now)
			d.log.Warn("another writer keeps changing the table; backing off",
				append(attrs, "repairs", len(d.fixes), "within", fightWindow.String(), "next_in", d.delay.String())...)
		} else {
			d.delay, d.notBefore = 0, time.Time{}
		}
		d.log.Info("table applied", append(attrs, "changes", res.Plan.Counts.String())...)
	} else {
		d.log.Debug("table holds the configuration", attrs...)
	}
	if !d.ready {
		d.ready = true
		d.notify.send("READY=1", d.status())
		return true
	}
	d.notify.send(d.status())
	return true
}

// keepBans reads the table's bans, after putting back those it held before
// when the table was made anew (it had been deleted with them).
func (d *daemonState) keepBans(ctx context.Context, recreated bool) {
	table, opts := d.o.cfg.Table, d.o.nftOptions()
	if recreated && len(d.bans) > 0 {
		elapsed := time.Since(d.bansAt)
		var left []nft.Ban
		for _, b := range d.bans {
			switch {
			case b.Left == 0:
				left = append(left, b)
			case b.Left > elapsed+time.Second:
				left = append(left, nft.Ban{Net: b.Net, Left: b.Left - elapsed})
			}
		}
		if err := nft.RestoreBans(ctx, table, left, opts...); err != nil {
			d.log.Error("could not put the bans back", "bans", len(left), "err", err)
		} else if len(left) > 0 {
			d.log.Info("bans put back", "bans", len(left))
		}
	}
	bans, err := nft.ReadBans(ctx, table, opts...)
	if err != nil {
		d.log.Warn("could not read the bans", "err", err)
		return
	}
	d.bans, d.bansAt = bans, time.Now()
}

// backOff doubles the wait before the next apply.
func (d *daemonState) backOff(now time.Time) {
	d.delay = min(max(2*d.delay, fightFirst), fightMax)
	d.notBefore = now.Add(d.delay)
}

// retryLater makes the loop apply again (after the back-off, if one is
// running), even if no announcement comes.
func (d *daemonState) retryLater() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *daemonState) status() string {
	return fmt.Sprintf("STATUS=table inet %s applied; %d batches sent", d.o.cfg.Table, d.applied)
}

// reload reads the configuration again. One that does not parse or
// validate is logged, naming the bad key and value, and the ruleset in
// force stays; the namespace and the table cannot change while running.
func (d *daemonState) reload(ctx context.Context, args []string) {
	d.notify.send("RELOADING=1")
	defer func() { d.notify.send("READY=1", d.status()) }()
	o, err := parseFlags("daemon", args, io.Discard)
	if err == nil && (o.netns != d.o.netns || o.cfg.Table != d.o.cfg.Table) {
		err = errors.New("the namespace and the table cannot change while the daemon runs: restart it")
	}
	if d.metrics != nil {
		d.metrics.reloadOK.Set(map[bool]float64{true: 1, false: 0}[err == nil])
	}
	if err != nil {
		d.log.Error("reload failed; the configuration in force stays", "err", err)
		d.notify.send("STATUS=reload failed: " + err.Error())
		return
	}
	d.o = o
	if d.scrape != nil {
		d.scrape.setOptions(o)
	}
	d.log.Info("configuration read again", "ports", join(o.cfg.Ports), "roles", join(o.cfg.Roles))
	d.delay, d.notBefore = 0, time.Time{}
	d.apply(ctx, "reload")
}

// newLogger logs to w as text, or one JSON object a line.
func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

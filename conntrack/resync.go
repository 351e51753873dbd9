package conntrack

import "context"

// resync lists the expectations and, when lost is true, reports a lost event
// and the differences from what the watch knew. (Unsorted: reconcile keys
// them by master and expected tuple.)
func (w *watcher) resync(ctx context.Context, lost bool) error {
	var xs []Expectation
	if err := each(ctx, w.k, "", func(x Expectation) { xs = append(xs, x) }); err != nil {
		return err
	}
	w.reconcile(xs, lost)
	return nil
}

// reconcile replaces what the watch knows with the listed expectations xs
// and, when events were lost, reports the loss and the differences.
func (w *watcher) reconcile(xs []Expectation, lost bool) {
	now := map[expKey]Expectation{}
	for _, x := range xs {
		now[key(x)] = x
		w.remember(x.Master, x.Helper)
	}
	if !lost {
		w.known = now
		return
	}
	var diffs []Event
	for k, x := range now {
		if _, ok := w.known[k]; !ok && w.wanted(x.Helper) {
			diffs = append(diffs, Event{Type: EventNew, Expectation: &x})
		}
	}
	for k, x := range w.known {
		if _, ok := now[k]; !ok && w.wanted(x.Helper) {
			diffs = append(diffs, Event{Type: EventDestroy, Expectation: &x})
		}
	}
	w.known = now
	w.handle(Event{Type: EventLost, Resynced: len(diffs)})
	for _, d := range diffs {
		w.handle(d)
	}
}

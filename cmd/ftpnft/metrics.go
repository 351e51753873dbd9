package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ftpnft/ftpnft/conntrack"
	"github.com/ftpnft/ftpnft/helper"
	"github.com/ftpnft/ftpnft/nft"
)

// metrics are the daemon's Prometheus metrics: what the daemon counts as
// it goes (reconciles, reloads, expectation events from a watch), and what
// a scrape reads from the kernel then (rule counters, expectations,
// conntrack's use, bans, set sizes), so that nothing polls between scrapes.
type metrics struct {
	reg *prometheus.Registry

	reconciles      *prometheus.CounterVec
	reconcileErrors prometheus.Counter
	reconcileTime   prometheus.Histogram
	lastSuccess     prometheus.Gauge
	reloadOK        prometheus.Gauge
	events          *prometheus.CounterVec
	eventsLost      prometheus.Counter
}

func newMetrics(scrape *scraper) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ftpnft_reconciles_total",
			Help: "Applies of the configuration, by what caused them: start, drift (another writer touched the table), lost (announcements were lost), reload, retry."}, []string{"reason"}),
		reconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "ftpnft_reconcile_errors_total",
			Help: "Applies of the configuration that failed."}),
		reconcileTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ftpnft_reconcile_duration_seconds",
			Help: "How long an apply of the configuration took, reading the table included.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ftpnft_last_reconcile_success_timestamp_seconds",
			Help: "When the configuration was last applied successfully, in seconds since 1970."}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ftpnft_config_last_reload_successful",
			Help: "1 if the last reading of the configuration (at start or on SIGHUP) succeeded, else 0."}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ftpnft_expectation_events_total",
			Help: "Conntrack expectation events seen: new (an expectation was created), destroy, related (an expected data connection was admitted)."}, []string{"event"}),
		eventsLost: prometheus.NewCounter(prometheus.CounterOpts{Name: "ftpnft_expectation_events_lost_total",
			Help: "Times the kernel dropped expectation events and the watch resynchronised."}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ftpnft_build_info", Help: "ftpnft's version and the Go version it was built with; always 1.",
		ConstLabels: prometheus.Labels{"version": buildVersion(), "goversion": runtime.Version()}})
	build.Set(1)
	m.reloadOK.Set(1)
	for _, e := range []conntrack.EventType{conntrack.EventNew, conntrack.EventDestroy, conntrack.EventRelated} {
		m.events.WithLabelValues(string(e)) // present from the start, at 0
	}
	m.reg.MustRegister(m.reconciles, m.reconcileErrors, m.reconcileTime, m.lastSuccess, m.reloadOK, m.events, m.eventsLost, build, scrape)
	return m
}

// applied records one apply of the configuration.
func (m *metrics) applied(reason string, took time.Duration, err error) {
	m.reconciles.WithLabelValues(reason).Inc()
	m.reconcileTime.Observe(took.Seconds())
	if err != nil {
		m.reconcileErrors.Inc()
		return
	}
	m.lastSuccess.SetToCurrentTime()
}

// event counts one expectation event.
func (m *metrics) event(ev conntrack.Event) {
	if ev.Type == conntrack.EventLost {
		m.eventsLost.Inc()
		return
	}
	m.events.WithLabelValues(string(ev.Type)).Inc()
}

// scraper is the part of the metrics read from the kernel at each scrape.
type scraper struct {
	ctx      context.Context
	mu       sync.Mutex
	o        *cliOptions // the configuration in force; set by the daemon
	onError  func(what string, err error)
	counterP *prometheus.Desc
	counterB *prometheus.Desc
	exps     *prometheus.Desc
	expMax   *prometheus.Desc
	ctNow    *prometheus.Desc
	ctMax    *prometheus.Desc
	bans     *prometheus.Desc
	elements *prometheus.Desc
}

func newScraper(ctx context.Context, o *cliOptions, onError func(string, error)) *scraper {
	return &scraper{ctx: ctx, o: o, onError: onError,
		counterP: prometheus.NewDesc("ftpnft_rule_packets_total", "Packets counted by each rule of ftpnft's table.", []string{"chain", "rule"}, nil),
		counterB: prometheus.NewDesc("ftpnft_rule_bytes_total", "Bytes counted by each rule of ftpnft's table.", []string{"chain", "rule"}, nil),
		exps:     prometheus.NewDesc("ftpnft_expectations", "Conntrack expectations now, by helper.", []string{"helper"}, nil),
		expMax:   prometheus.NewDesc("ftpnft_expectations_limit", "The most conntrack expectations the namespace holds (nf_conntrack_expect_max).", nil, nil),
		ctNow:    prometheus.NewDesc("ftpnft_conntrack_entries", "Connections conntrack tracks now.", nil, nil),
		ctMax:    prometheus.NewDesc("ftpnft_conntrack_entries_limit", "The most connections conntrack tracks (nf_conntrack_max).", nil, nil),
		bans:     prometheus.NewDesc("ftpnft_bans", "Bans in ftpnft's table (ftpnft ban).", nil, nil),
		elements: prometheus.NewDesc("ftpnft_set_elements", "Elements (ranges) of each address set of ftpnft's table: the configured ones as applied, and the bans.", []string{"set"}, nil),
	}
}

func (s *scraper) setOptions(o *cliOptions) {
	s.mu.Lock()
	s.o = o
	s.mu.Unlock()
}

// options is the configuration in force.
func (s *scraper) options() *cliOptions {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.o
}

// Describe sends the descriptions of what Collect reads.
func (s *scraper) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.counterP, s.counterB, s.exps, s.expMax, s.ctNow, s.ctMax, s.bans, s.elements} {
		ch <- d
	}
}

// Collect reads the kernel. What cannot be read is left out of the scrape
// and logged.
func (s *scraper) Collect(ch chan<- prometheus.Metric) {
	o := s.options()
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if cs, err := nft.ReadCounters(ctx, o.cfg.Table, o.nftOptions()...); err != nil {
		s.onError("rule counters", err)
	} else {
		for _, c := range cs {
			ch <- prometheus.MustNewConstMetric(s.counterP, prometheus.CounterValue, float64(c.Packets), c.Chain, c.Rule)
			ch <- prometheus.MustNewConstMetric(s.counterB, prometheus.CounterValue, float64(c.Bytes), c.Chain, c.Rule)
		}
	}
	copts := append(o.conntrackOptions(), conntrack.WithHelper(""))
	if xs, err := conntrack.List(ctx, copts...); err != nil {
		s.onError("expectations", err)
	} else {
		byHelper := map[string]int{"ftp": 0}
		for _, x := range xs {
			byHelper[x.Helper]++
		}
		for h, n := range byHelper {
			ch <- prometheus.MustNewConstMetric(s.exps, prometheus.GaugeValue, float64(n), h)
		}
	}
	if sys, err := helper.ReadSysctls(o.netns); err != nil {
		s.onError("nf_conntrack_expect_max", err)
	} else if n, err := strconv.Atoi(strings.TrimSpace(sys.ExpectMax)); err == nil {
		ch <- prometheus.MustNewConstMetric(s.expMax, prometheus.GaugeValue, float64(n))
	}
	if n, limit, err := conntrack.Entries(ctx, o.conntrackOptions()...); err != nil {
		s.onError("conntrack entries", err)
	} else {
		ch <- prometheus.MustNewConstMetric(s.ctNow, prometheus.GaugeValue, float64(n))
		ch <- prometheus.MustNewConstMetric(s.ctMax, prometheus.GaugeValue, float64(limit))
	}
	bans, err := nft.ReadBans(ctx, o.cfg.Table, o.nftOptions()...)
	if err != nil {
		s.onError("bans", err)
	} else {
		ch <- prometheus.MustNewConstMetric(s.bans, prometheus.GaugeValue, float64(len(bans)))
	}
	// The configured sets as applied: the daemon keeps the table holding
	// them, and counting a million elements in the kernel takes a minute.
	for _, set := range o.ruleset.Sets {
		if set.Runtime {
			if err == nil {
				n := 0
				for _, b := range bans {
					if b.Net.From.Is6() == set.V6 {
						n++
					}
				}
				ch <- prometheus.MustNewConstMetric(s.elements, prometheus.GaugeValue, float64(n), set.Name)
			}
			continue
		}
		if set.Interval {
			ch <- prometheus.MustNewConstMetric(s.elements, prometheus.GaugeValue, float64(len(set.Ranges)), set.Name)
		}
	}
}

// serveMetrics serves /metrics and /healthz on addr until ctx ends. It
// returns once it listens, or with the error that kept it from listening.
func serveMetrics(ctx context.Context, addr string, m *metrics, healthy func(context.Context) (bool, error), log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ok, err := healthy(r.Context())
		switch {
		case err != nil:
			http.Error(w, "cannot read the table: "+err.Error(), http.StatusServiceUnavailable)
		case !ok:
			http.Error(w, "the table does not hold the configuration", http.StatusServiceUnavailable)
		default:
			w.Write([]byte("ok\n"))
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	return nil
}

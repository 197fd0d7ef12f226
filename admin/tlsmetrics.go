package admin

import "github.com/prometheus/client_golang/prometheus"

// tlsCollector counts the TLS sessions by the driver that relays them, read from the
// servers at scrape time.
type tlsCollector struct {
	ensembles *Ensembles
	desc      *prometheus.Desc
}

// NewTLSCollector returns the collector of zkgate_tls_sessions_total: sessions with TLS
// on either side, path "fast" when a relay loop took them from crypto/tls, "fallback"
// when they stayed on the goroutine driver (a CBC suite, say) although the loops run.
func NewTLSCollector(ensembles *Ensembles) prometheus.Collector {
	return &tlsCollector{ensembles: ensembles, desc: prometheus.NewDesc("zkgate_tls_sessions_total",
		"Sessions with TLS on either side, by path: fast (a relay loop seals and opens the records), fallback (the goroutine driver, crypto/tls).",
		[]string{"ensemble", "path"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *tlsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *tlsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, e := range c.ensembles.List() {
		fast, fallback := e.Server.TLSSessions()
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(fast), e.Name, "fast")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(fallback), e.Name, "fallback")
	}
}

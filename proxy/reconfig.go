package proxy

import (
	"github.com/zkgate/zkgate/breaker"
	"github.com/zkgate/zkgate/health"
	"github.com/zkgate/zkgate/hotspot"
)

// What a configuration reload replaces while the server runs: the settings, the health
// view's source and the ejector, each behind an atomic pointer read where it is used.

type viewSource struct{ ViewSource }

// conf is the current settings; a reload may replace them between two calls.
func (s *Server) conf() *Config { return s.cfg.Load() }

// view is the current health view.
func (s *Server) view() *health.View { return s.views.Load().View() }

// ejector is the current member ejector.
func (s *Server) ejector() *breaker.Ejector { return s.ej.Load() }

// hotTracker is the hot spot tracker, nil when hot spots are off.
func (s *Server) hotTracker() *hotspot.Tracker { return s.hot.Load() }

// Reconfigure replaces the settings (a configuration reload). The relay driver, the
// number of loops and the name stay as they were (a restart changes them). New sessions
// take every new setting; live sessions take the routing, relay and member settings at
// once, and keep the client limits they were placed with. Hot spots turned on start
// counting now; turned off, they stop.
func (s *Server) Reconfigure(cfg Config) {
	old := s.conf()
	c := cfg.withDefaults()
	c.Name, c.Driver, c.Loops = old.Name, old.Driver, old.Loops
	if c.Hotspots != old.Hotspots {
		s.hot.Store(newHotTracker(c.Hotspots))
	}
	s.cfg.Store(&c)
}

// SetViews makes views the health view's source (a new monitor, with other members or
// settings). Subscribe ApplyView to it as well.
func (s *Server) SetViews(views ViewSource) { s.views.Store(&viewSource{views}) }

// SetEjector replaces the member ejector (other members or settings). Ejections under
// way end: health still keeps a down member out.
func (s *Server) SetEjector(j *breaker.Ejector) { s.ej.Store(j) }

package main

import (
	"reflect"

	"github.com/eddy-iot/eddy/config"
)

// reload applies what SIGHUP can change without dropping streams: tokens,
// sensors and MQTT. A change to anything else is logged with the reason
// it needs a restart; a bad new config is refused whole.
func (d *daemon) reload(load func() (*config.Config, error)) {
	cfg, err := load()
	if err != nil {
		d.logger.Error("reload refused: the config is invalid; keeping the running one", "err", err)
		return
	}
	for _, c := range restartOnly(d.cfg, cfg) {
		d.logger.Warn("reload: this change needs a restart and was not applied", "key", c)
	}
	tokens, err := accessTokens(cfg, d.logger)
	if err != nil {
		d.logger.Error("reload: tokens", "err", err)
	} else {
		d.srv.SetTokens(tokens)
	}
	restarted, err := d.ingest.reload(cfg.Sensors, cfg.MQTT)
	if err != nil {
		d.logger.Error("reload: sensors and MQTT refused; the previous ones run on", "err", err)
		d.cfg.Auth = cfg.Auth
		return
	}
	d.logger.Info("reloaded", "tokens", len(tokens), "ingest_restarted", restarted)
	d.cfg.Auth, d.cfg.Sensors, d.cfg.MQTT = cfg.Auth, cfg.Sensors, cfg.MQTT
}

// restartOnly names the sections that differ but cannot change live.
func restartOnly(old, cfg *config.Config) []string {
	var keys []string
	for name, pair := range map[string][2]any{
		"server":  {old.Server, cfg.Server},
		"storage": {old.Storage, cfg.Storage},
		"tls":     {old.TLS, cfg.TLS},
		"stream":  {old.Stream, cfg.Stream},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			keys = append(keys, name)
		}
	}
	return keys
}

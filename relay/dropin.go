package relay

// validateDropIn checks the coturn drop-in options of Config.
func (cfg Config) validateDropIn() []error {
	var errs []error
	if err := cfg.MetricNames.validate(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/spf13/pflag"
)

// applyConfigSources fills every flag the user did not set on the command line
// from, in order of precedence, the DISTKV_<FLAG> environment variable (dashes
// become underscores) and the TOML file named by --config (keys are flag names,
// with dashes or underscores). Unknown keys in the file are an error, so a typo
// never silently falls back to a default.
func applyConfigSources(fs *pflag.FlagSet, configPath string) error {
	file := map[string]any{}
	if configPath != "" {
		md, err := toml.DecodeFile(configPath, &file)
		if err != nil {
			return fmt.Errorf("config file %s: %w", configPath, err)
		}
		_ = md
	}
	normalized := map[string]any{}
	for k, v := range file {
		name := strings.ReplaceAll(k, "_", "-")
		if f := fs.Lookup(name); f == nil || name == "config" {
			known := []string{}
			fs.VisitAll(func(f *pflag.Flag) {
				if f.Name != "config" && f.Name != "help" {
					known = append(known, f.Name)
				}
			})
			sort.Strings(known)
			return fmt.Errorf("config file %s: unknown setting %q (known: %s)", configPath, k, strings.Join(known, ", "))
		}
		normalized[name] = v
	}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		env := "DISTKV_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment variable %s=%q: %w", env, v, e)
			}
			return
		}
		if v, ok := normalized[f.Name]; ok {
			s := fmt.Sprint(v)
			if list, isList := v.([]any); isList {
				parts := make([]string, len(list))
				for i, p := range list {
					parts[i] = fmt.Sprint(p)
				}
				s = strings.Join(parts, ",")
			}
			if e := fs.Set(f.Name, s); e != nil {
				err = fmt.Errorf("config file %s: %s = %v: %w", configPath, f.Name, v, e)
			}
		}
	})
	return err
}

// Package config loads a service's configuration: defaults set by the
// caller, then an optional YAML file (unknown keys are an error), then
// environment variables named by `env` struct tags.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrInvalid is returned for a configuration value that cannot be used.
var ErrInvalid = errors.New("invalid configuration")

// Load fills dst (a pointer to a struct already holding its defaults) from
// the YAML file at path, when path is not empty, and then from the
// environment through lookup (os.LookupEnv when nil).
//
// Fields are matched to YAML keys by their `yaml` tags; a field tagged
// `env:"NAME"` is overridden by that variable or, when NAME is not set, by
// the content of the file that NAME_FILE names (trailing newlines removed):
// a credential mounted from a Kubernetes Secret is given as NAME_FILE, so its
// value never appears in the pod spec or the process environment.
// Supported field kinds:
// string, bool, ints, float64, time.Duration, []string (comma-separated in
// the environment) and nested structs.
func Load(path string, dst any, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read config file: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(dst); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: config file %s: %w", ErrInvalid, path, err)
		}
	}
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("%w: config destination must be a pointer to a struct", ErrInvalid)
	}
	return applyEnv(v.Elem(), lookup)
}

var durationType = reflect.TypeOf(time.Duration(0))

func applyEnv(v reflect.Value, lookup func(string) (string, bool)) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		fv := v.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			if err := applyEnv(fv, lookup); err != nil {
				return err
			}
			continue
		}
		name := f.Tag.Get("env")
		if name == "" {
			continue
		}
		raw, ok := lookup(name)
		if !ok {
			file, fromFile := lookup(name + "_FILE")
			if !fromFile || file == "" {
				continue
			}
			content, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("%w: %s_FILE: %w", ErrInvalid, name, err)
			}
			raw = strings.TrimRight(string(content), "\r\n")
		}
		if err := setValue(fv, raw); err != nil {
			return fmt.Errorf("%w: %s=%q: %w", ErrInvalid, name, raw, err)
		}
	}
	return nil
}

func setValue(fv reflect.Value, raw string) error {
	if fv.Type() == durationType {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return err
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return err
		}
		fv.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			return err
		}
		fv.SetUint(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return err
		}
		fv.SetFloat(n)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported slice type %s", fv.Type())
		}
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		fv.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("unsupported field type %s", fv.Type())
	}
	return nil
}

// Package automigrate scans a credentials source at an interval and
// migrates the accounts it finds that match a pattern and are not accounts
// yet. The source is only read, never changed; and a Secrets source is
// listed as metadata only, so the control plane never holds a credential
// of a Secret: the account references it and the watcher reads it.
package automigrate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
	"github.com/outposthq/outpost/services/account-migrator/internal/engine"
)

// SourceAuto is the source recorded on accounts created here.
const SourceAuto = "auto"

// maxKubeconfigBytes bounds one kubeconfig file read from the directory.
const maxKubeconfigBytes = 1 << 20

// Candidate is one account a source offers.
type Candidate struct {
	Name string
	// KubeconfigFile references the credentials (Secrets source).
	KubeconfigFile string
	// Kubeconfig is the file's content (directory source), sealed before
	// it is stored.
	Kubeconfig []byte
}

// Source lists candidate accounts.
type Source interface {
	List(ctx context.Context) ([]Candidate, error)
}

// Dir is a folder of kubeconfig files; the account is named after the file
// without its extension. Hidden files and folders are skipped.
type Dir struct {
	Path string
}

// List implements Source.
func (d Dir) List(context.Context) ([]Candidate, error) {
	entries, err := os.ReadDir(d.Path)
	if err != nil {
		return nil, fmt.Errorf("read kubeconfig directory: %w", err)
	}
	var out []Candidate
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), ".") || !en.Type().IsRegular() {
			continue
		}
		info, err := en.Info()
		if err != nil || info.Size() > maxKubeconfigBytes {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(d.Path, en.Name()))
		if err != nil {
			return nil, fmt.Errorf("read kubeconfig %s: %w", en.Name(), err)
		}
		out = append(out, Candidate{Name: strings.TrimSuffix(en.Name(), filepath.Ext(en.Name())), Kubeconfig: raw})
	}
	return out, nil
}

// secretsResource is core/v1 secrets.
var secretsResource = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// Secrets lists labelled Secrets of one namespace through the metadata
// API: only names and labels cross the wire, never data.
type Secrets struct {
	Client        metadata.Interface
	Namespace     string
	LabelSelector string
	Key           string
}

// NewSecrets builds a Secrets source for the cluster of kubeconfig (or the
// in-cluster one when it is empty).
func NewSecrets(kubeconfig, namespace, selector, key string) (*Secrets, error) {
	var (
		cfg *rest.Config
		err error
	)
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("secrets source: kubernetes config: %w", err)
	}
	client, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("secrets source: %w", err)
	}
	return &Secrets{Client: client, Namespace: namespace, LabelSelector: selector, Key: key}, nil
}

// List implements Source.
func (s *Secrets) List(ctx context.Context) ([]Candidate, error) {
	list, err := s.Client.Resource(secretsResource).Namespace(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: s.LabelSelector})
	if err != nil {
		return nil, fmt.Errorf("list secrets of %s: %w", s.Namespace, err)
	}
	out := make([]Candidate, 0, len(list.Items))
	for _, it := range list.Items {
		out = append(out, Candidate{Name: it.Name, KubeconfigFile: accounts.SecretRef(it.Name, s.Key, s.Namespace)})
	}
	return out, nil
}

// Creator creates accounts (engine.Engine).
type Creator interface {
	Create(ctx context.Context, tenant string, in accounts.Input, source string) (*accounts.Record, error)
}

// Options configure a Migrator.
type Options struct {
	Tenant   string
	Pattern  *regexp.Regexp
	ZoneID   string
	Interval time.Duration
	Logger   *slog.Logger
}

// Migrator runs the scans.
type Migrator struct {
	src     Source
	creator Creator
	opts    Options
}

// New returns a migrator of src's accounts into creator.
func New(src Source, creator Creator, opts Options) *Migrator {
	if opts.Pattern == nil {
		opts.Pattern = regexp.MustCompile("")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Migrator{src: src, creator: creator, opts: opts}
}

// Run scans every Interval until ctx is done.
func (m *Migrator) Run(ctx context.Context) error {
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	for {
		if _, err := m.ScanOnce(ctx); err != nil && ctx.Err() == nil {
			m.opts.Logger.Warn("automatic migration scan failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ScanOnce lists the source and creates, as TO_MIGRATE, every matching
// account that does not exist yet. It returns the names created.
func (m *Migrator) ScanOnce(ctx context.Context) ([]string, error) {
	cands, err := m.src.List(ctx)
	if err != nil {
		return nil, err
	}
	var created []string
	active := string(accounts.Active)
	for _, c := range cands {
		if !m.opts.Pattern.MatchString(c.Name) {
			continue
		}
		if accounts.ValidateName(c.Name) != nil {
			m.opts.Logger.Warn("candidate account skipped: name is not a valid account name", "account", c.Name)
			continue
		}
		in := accounts.Input{Name: c.Name, State: &active}
		if m.opts.ZoneID != "" {
			in.ZoneID = &m.opts.ZoneID
		}
		if c.KubeconfigFile != "" {
			in.KubeconfigFile = &c.KubeconfigFile
		} else {
			contents := string(c.Kubeconfig)
			in.KubeconfigContents = &contents
		}
		_, err := m.creator.Create(ctx, m.opts.Tenant, in, SourceAuto)
		switch {
		case errors.Is(err, engine.ErrExists):
		case err != nil:
			m.opts.Logger.Warn("automatic migration of an account failed", "account", c.Name, "error", err)
		default:
			created = append(created, c.Name)
		}
	}
	if len(created) > 0 {
		m.opts.Logger.Info("accounts migrated automatically", "tenant", m.opts.Tenant, "accounts", created)
	}
	return created, nil
}

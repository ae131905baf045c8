package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

// ErrSecretFormat is returned when a mapped JSON key is asked of a secret
// whose string is not a JSON object of strings. The error never quotes
// the secret.
var ErrSecretFormat = errors.New("secret is not a JSON object")

// SecretsManagerAPI is the part of the Secrets Manager client the AWS
// provider uses.
type SecretsManagerAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// AWSRef names a secret and, optionally, a key of its JSON object.
type AWSRef struct {
	SecretID string
	JSONKey  string
}

// AWS reads AWS Secrets Manager. ${NAME} is Mapping[NAME] when mapped,
// else the secret "<Prefix>NAME" when Prefix is set; any number of
// secrets, each read with its own GetSecretValue (AWSCURRENT). A secret
// that does not exist is not found; other errors (denied, throttled,
// unreachable) make the job retryable.
type AWS struct {
	Client  SecretsManagerAPI
	Prefix  string
	Mapping map[string]AWSRef
}

// Name implements Provider.
func (a *AWS) Name() string { return "aws" }

// Lookup implements Provider.
func (a *AWS) Lookup(ctx context.Context, name string) (string, bool, error) {
	ref, ok := a.Mapping[name]
	if !ok {
		if a.Prefix == "" {
			return "", false, nil
		}
		ref = AWSRef{SecretID: a.Prefix + name}
	}
	out, err := a.Client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(ref.SecretID)})
	var nf *types.ResourceNotFoundException
	switch {
	case errors.As(err, &nf):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("get secret %q from Secrets Manager: %w", ref.SecretID, err)
	}
	v := aws.ToString(out.SecretString)
	if out.SecretString == nil {
		v = string(out.SecretBinary)
	}
	if ref.JSONKey == "" {
		return v, true, nil
	}
	var obj map[string]any
	// The decoder's error could quote the secret: it is dropped.
	if json.Unmarshal([]byte(v), &obj) != nil {
		return "", false, fmt.Errorf("%w: %q (for key %q)", ErrSecretFormat, ref.SecretID, ref.JSONKey)
	}
	switch x := obj[ref.JSONKey].(type) {
	case nil:
		return "", false, nil
	case string:
		return x, true, nil
	case float64, bool:
		return fmt.Sprint(x), true, nil
	}
	return "", false, fmt.Errorf("%w: %q key %q is not a string", ErrSecretFormat, ref.SecretID, ref.JSONKey)
}

// ParseAWSMapping reads entries "NAME=secret-id" or "NAME=secret-id#key".
func ParseAWSMapping(entries []string) (map[string]AWSRef, error) {
	out := map[string]AWSRef{}
	var errs []error
	for _, e := range entries {
		name, target, ok := strings.Cut(strings.TrimSpace(e), "=")
		id, key, hasKey := strings.Cut(target, "#")
		if !ok || !validName(name) || id == "" || (hasKey && key == "") {
			errs = append(errs, fmt.Errorf("%w: %q must be NAME=secret-id or NAME=secret-id#json-key", ErrMapping, e))
			continue
		}
		out[name] = AWSRef{SecretID: id, JSONKey: key}
	}
	return out, errors.Join(errs...)
}

// NewSecretsManager is a Secrets Manager client with the standard AWS
// credential chain; region and endpoint override the SDK's defaults when
// set (an endpoint for a VPC endpoint or a test server).
func NewSecretsManager(ctx context.Context, region, endpoint string) (SecretsManagerAPI, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if region != "" {
		opts = append(opts, awsconfig.WithRegion(region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws configuration: %w", err)
	}
	return secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}), nil
}

package jobs

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"google.golang.org/protobuf/types/known/durationpb"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// Bounds of a kubernetes task. An image reference is at most 255 bytes for
// a name plus a tag or digest; the rest match the command task's.
const maxImageLen = 1024

// quantity is Kubernetes' resource quantity grammar without a sign: the
// runner parses it again with apimachinery, this refuses a typo at submit.
var quantity = regexp.MustCompile(`^(\+?[0-9]+(\.[0-9]*)?|\+?\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+)?$`)

// KubernetesTask runs a container as a Kubernetes Job in the runner's
// cluster. ${NAME} references in command, args and env are resolved by the
// runner and reach the pod through a Secret, never the Job's spec. The
// ServiceAccount is the runner's choice (from the job's user or project).
type KubernetesTask struct {
	Image     string               `json:"image"`
	Command   []string             `json:"command,omitempty"`
	Args      []string             `json:"args,omitempty"`
	Env       map[string]string    `json:"env,omitempty"`
	Resources *KubernetesResources `json:"resources,omitempty"`
	// Timeout is the Job's activeDeadlineSeconds; zero uses the job's.
	Timeout Duration `json:"timeout,omitempty"`
}

// KubernetesResources are the container's requests and limits as
// Kubernetes quantities ("500m", "256Mi").
type KubernetesResources struct {
	CPURequest    string `json:"cpu_request,omitempty"`
	CPULimit      string `json:"cpu_limit,omitempty"`
	MemoryRequest string `json:"memory_request,omitempty"`
	MemoryLimit   string `json:"memory_limit,omitempty"`
}

// Proto converts k.
func (k *KubernetesTask) Proto() *jobsv1.KubernetesTask {
	if k == nil {
		return nil
	}
	out := &jobsv1.KubernetesTask{Image: k.Image, Command: k.Command, Args: k.Args, Env: k.Env}
	if r := k.Resources; r != nil {
		out.Resources = &jobsv1.KubernetesResources{CpuRequest: r.CPURequest, CpuLimit: r.CPULimit, MemoryRequest: r.MemoryRequest, MemoryLimit: r.MemoryLimit}
	}
	if k.Timeout != 0 {
		out.Timeout = durationpb.New(k.Timeout.D())
	}
	return out
}

func kubernetesFromProto(k *jobsv1.KubernetesTask) *KubernetesTask {
	if k == nil {
		return nil
	}
	out := &KubernetesTask{Image: k.GetImage(), Command: k.GetCommand(), Args: k.GetArgs(), Env: k.GetEnv()}
	if r := k.GetResources(); r != nil {
		out.Resources = &KubernetesResources{CPURequest: r.GetCpuRequest(), CPULimit: r.GetCpuLimit(), MemoryRequest: r.GetMemoryRequest(), MemoryLimit: r.GetMemoryLimit()}
	}
	if k.GetTimeout() != nil {
		out.Timeout = Duration(k.GetTimeout().AsDuration())
	}
	return out
}

func checkKubernetes(k *jobsv1.KubernetesTask) error {
	const p = "task.kubernetes"
	switch {
	case k == nil || k.Image == "":
		return fieldErr(p+".image", "is required")
	case len(k.Image) > maxImageLen:
		return fieldErr(p+".image", "must be at most %d bytes", maxImageLen)
	case strings.IndexFunc(k.Image, unicode.IsSpace) >= 0 || strings.IndexFunc(k.Image, unicode.IsControl) >= 0:
		return fieldErr(p+".image", "must not contain spaces or control characters")
	case len(k.Command) > maxArgs:
		return fieldErr(p+".command", "must have at most %d entries", maxArgs)
	case len(k.Args) > maxArgs:
		return fieldErr(p+".args", "must have at most %d entries", maxArgs)
	case len(k.Env) > maxEnv:
		return fieldErr(p+".env", "must have at most %d entries", maxEnv)
	}
	for i, c := range k.Command {
		if len(c) > maxCommandLen {
			return fieldErr(fmt.Sprintf("%s.command[%d]", p, i), "must be at most %d bytes", maxCommandLen)
		}
	}
	for name := range k.Env {
		// OUTPOST_ is the runner's: it passes resolved arguments that way.
		if !envName.MatchString(name) || strings.HasPrefix(name, "OUTPOST_") {
			return fieldErr(p+".env."+name, "is not a valid environment variable name (OUTPOST_ is reserved)")
		}
	}
	if r := k.Resources; r != nil {
		for field, v := range map[string]string{"cpu_request": r.CpuRequest, "cpu_limit": r.CpuLimit, "memory_request": r.MemoryRequest, "memory_limit": r.MemoryLimit} {
			if v != "" && !quantity.MatchString(v) {
				return fieldErr(p+".resources."+field, "must be a Kubernetes quantity such as \"500m\" or \"256Mi\"")
			}
		}
	}
	if t := k.Timeout; t != nil {
		if err := t.CheckValid(); err != nil || t.AsDuration() < 0 {
			return fieldErr(p+".timeout", "must be a non-negative duration")
		}
	}
	return nil
}

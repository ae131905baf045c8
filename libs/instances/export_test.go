package instances_test

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	instancesv1 "github.com/outposthq/outpost/proto/outpost/instances/v1"
)

func heartbeatOf(id string, at time.Time) *instancesv1.InstanceHeartbeat {
	return &instancesv1.InstanceHeartbeat{Id: id, Service: "account-migrator", Ready: true, IntervalMs: 200, StartedAt: timestamppb.New(at)}
}

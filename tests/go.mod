module github.com/outposthq/outpost/tests

go 1.26.0

replace (
	github.com/outposthq/outpost/libs => ../libs
	github.com/outposthq/outpost/proto => ../proto
)

require (
	github.com/nats-io/nats.go v1.55.0
	github.com/outposthq/outpost/libs v0.0.0-00010101000000-000000000000
	github.com/outposthq/outpost/proto v0.0.0
	github.com/stretchr/testify v1.12.1
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/google/uuid v1.6.0 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

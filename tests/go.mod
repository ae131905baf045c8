module github.com/outposthq/outpost/tests

go 1.26.0

replace (
	github.com/outposthq/outpost/libs => ../libs
	github.com/outposthq/outpost/proto => ../proto
)

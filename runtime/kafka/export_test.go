package kafka

// NewRecord exposes newRecord to the external tests.
var NewRecord = newRecord

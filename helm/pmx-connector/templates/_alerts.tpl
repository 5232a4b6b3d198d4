{{/*
The alert rules (a Prometheus rule-file document: `groups:`), shared by prometheusrule.yaml and by
the plain rules file deploy/prometheus/alerts.yaml, which is rendered from this template
(scripts/render-alert-rules.py) and checked against it by the test suite.
Each alert's runbook is the section of docs/operations.md named after it.
*/}}
{{- define "pmx-connector.alertRules" -}}
{{- $a := .Values.alerts }}
{{- $sel := printf "job=%q" (include "pmx-connector.alertJob" .) }}
{{- $runbook := $a.runbookBaseUrl }}
groups:
  - name: pmx-connector
    rules:
      - alert: PmxConnectorStreamDown
        # A standby (pmx_connector_leader 0) opens no stream; without the metric (no election) it fires as before.
        expr: pmx_connector_stream_connected{ {{- $sel -}} } == 0 unless on (instance) pmx_connector_leader{ {{- $sel -}} } == 0
        for: {{ $a.streamDown.for }}
        labels:
          severity: critical
        annotations:
          summary: pmx-connector has no venue order stream
          description: {{ printf "'{{ $labels.instance }} has had no venue stream for more than %s; executions are not being delivered until it reconnects.'" $a.streamDown.for }}
          runbook_url: {{ $runbook }}#pmxconnectorstreamdown
      - alert: PmxConnectorHeartbeatGap
        expr: time() - pmx_connector_last_heartbeat_timestamp_seconds{ {{- $sel -}} } > {{ $a.heartbeatGap.thresholdSeconds }} and pmx_connector_last_heartbeat_timestamp_seconds{ {{- $sel -}} } > 0
        for: {{ $a.heartbeatGap.for }}
        labels:
          severity: critical
        annotations:
          summary: No venue heartbeat for more than {{ $a.heartbeatGap.thresholdSeconds }}s
          description: {{`'{{ $labels.instance }} received its last venue heartbeat {{ $value | humanizeDuration }} ago.'`}}
          runbook_url: {{ $runbook }}#pmxconnectorheartbeatgap
      - alert: PmxConnectorStreamStalls
        expr: increase(pmx_connector_stream_stalls_total{ {{- $sel -}} }[{{ $a.streamStalls.window }}]) >= {{ $a.streamStalls.threshold }}
        for: 0m
        labels:
          severity: warning
        annotations:
          summary: The venue stream keeps stalling
          description: {{ printf "'{{ $labels.instance }}: the heartbeat watchdog cancelled {{ $value | humanize }} streams in the last %s.'" $a.streamStalls.window }}
          runbook_url: {{ $runbook }}#pmxconnectorstreamstalls
      - alert: PmxConnectorReconnectStorm
        expr: sum without (reason) (increase(pmx_connector_reconnects_total{ {{- $sel -}} }[{{ $a.reconnectStorm.window }}])) >= {{ $a.reconnectStorm.threshold }}
        for: 0m
        labels:
          severity: warning
        annotations:
          summary: The venue stream reconnects too often
          description: {{ printf "'{{ $labels.instance }} reconnected {{ $value | humanize }} times in the last %s.'" $a.reconnectStorm.window }}
          runbook_url: {{ $runbook }}#pmxconnectorreconnectstorm
      - alert: PmxConnectorStreamLimitReached
        expr: increase(pmx_connector_reconnects_total{ {{- $sel -}} ,reason="resource_exhausted"}[10m]) > 0
        for: 0m
        labels:
          severity: warning
        annotations:
          summary: The venue refused the stream (RESOURCE_EXHAUSTED)
          description: {{`'{{ $labels.instance }} was refused by the venue for too many open streams (20 per firm); it backs off up to 5 minutes.'`}}
          runbook_url: {{ $runbook }}#pmxconnectorstreamlimitreached
      - alert: PmxConnectorDropCopyDown
        # Only with drop_copy in venue.sources (no series otherwise); a standby runs no drop copy.
        # Warning, not critical like StreamDown: the venue keeps the firm's executions behind the
        # resume token, so an outage delays them and loses nothing; the loss case (token and time
        # refused) pages as PmxConnectorGapDetected (dropcopy_resume_refused).
        expr: pmx_connector_dropcopy_connected{ {{- $sel -}} } == 0 unless on (instance) pmx_connector_leader{ {{- $sel -}} } == 0
        for: {{ $a.dropCopyDown.for }}
        labels:
          severity: warning
        annotations:
          summary: pmx-connector has no venue drop-copy stream
          description: {{ printf "'{{ $labels.instance }} has had no drop-copy stream for more than %s; the firm-wide executions wait at the venue and are replayed from the resume token when it reconnects.'" $a.dropCopyDown.for }}
          runbook_url: {{ $runbook }}#pmxconnectordropcopydown
      - alert: PmxConnectorDropCopyTokenRefused
        # resume="time" (the time refused too) is a gap: PmxConnectorGapDetected pages for it.
        # The counter may have no series until the first refusal: `unless ... offset` catches a new one.
        expr: increase(pmx_connector_dropcopy_resume_refusals_total{ {{- $sel -}} ,resume="token"}[{{ $a.dropCopyTokenRefused.window }}]) > 0 or (pmx_connector_dropcopy_resume_refusals_total{ {{- $sel -}} ,resume="token"} > 0 unless pmx_connector_dropcopy_resume_refusals_total{ {{- $sel -}} ,resume="token"} offset {{ $a.dropCopyTokenRefused.window }})
        for: 0m
        labels:
          severity: info
        annotations:
          summary: The venue refused the drop-copy resume token
          description: {{ printf "'{{ $labels.instance }}: the venue refused the checkpointed drop-copy resume token in the last %s; the connector resumed by time instead (duplicates possible, nothing lost).'" $a.dropCopyTokenRefused.window }}
          runbook_url: {{ $runbook }}#pmxconnectordropcopytokenrefused
      - alert: PmxConnectorEventToAckLatencyHigh
        expr: histogram_quantile({{ $a.eventToAckLatency.quantile }}, rate(pmx_connector_event_to_ack_seconds_bucket{ {{- $sel -}} }[5m])) > {{ $a.eventToAckLatency.thresholdSeconds }}
        for: {{ $a.eventToAckLatency.for }}
        labels:
          severity: warning
        annotations:
          summary: Venue-to-Kafka latency is high
          description: {{ printf "'{{ $labels.instance }}: the %v quantile of venue transact time to Kafka acknowledgement is {{ $value | humanizeDuration }} (threshold %vs).'" $a.eventToAckLatency.quantile $a.eventToAckLatency.thresholdSeconds }}
          runbook_url: {{ $runbook }}#pmxconnectoreventtoacklatencyhigh
      - alert: PmxConnectorProduceErrors
        # The counter has no series until the first error: `unless ... offset` catches a new one.
        expr: increase(pmx_connector_produce_errors_total{ {{- $sel -}} }[{{ $a.produceErrors.window }}]) > 0 or (pmx_connector_produce_errors_total{ {{- $sel -}} } > 0 unless pmx_connector_produce_errors_total{ {{- $sel -}} } offset {{ $a.produceErrors.window }})
        for: 0m
        labels:
          severity: critical
        annotations:
          summary: Kafka deliveries are failing
          description: {{ printf "'{{ $labels.instance }}: deliveries to {{ $labels.topic }} failed with {{ $labels.error }} in the last %s; the connector stopped rather than skip a record and resumes from its checkpoint.'" $a.produceErrors.window }}
          runbook_url: {{ $runbook }}#pmxconnectorproduceerrors
      - alert: PmxConnectorCheckpointStale
        # A standby writes no checkpoint (its gauge stays 0); without pmx_connector_leader it fires as before.
        expr: time() - pmx_connector_last_checkpoint_timestamp_seconds{ {{- $sel -}} } > {{ $a.checkpointStale.thresholdSeconds }} unless on (instance) pmx_connector_leader{ {{- $sel -}} } == 0
        for: {{ $a.checkpointStale.for }}
        labels:
          severity: critical
        annotations:
          summary: No checkpoint written for more than {{ $a.checkpointStale.thresholdSeconds }}s
          description: {{`'{{ $labels.instance }} last had a checkpoint acknowledged {{ $value | humanizeDuration }} ago: Kafka is not acknowledging, or the pipeline is wedged.'`}}
          runbook_url: {{ $runbook }}#pmxconnectorcheckpointstale
      - alert: PmxConnectorGapDetected
        # The execution reasons only. A gap found at start-up (beyond_retention, dropcopy_resume_refused)
        # can be counted before a new pod's first scrape, its series then starts at 1: `unless ... offset`.
        expr: increase(pmx_connector_gaps_detected_total{ {{- $sel -}} ,reason=~"rest_exhausted|beyond_retention|dropcopy_resume_refused"}[{{ $a.gapDetected.window }}]) > 0 or (pmx_connector_gaps_detected_total{ {{- $sel -}} ,reason=~"rest_exhausted|beyond_retention|dropcopy_resume_refused"} > 0 unless pmx_connector_gaps_detected_total{ {{- $sel -}} ,reason=~"rest_exhausted|beyond_retention|dropcopy_resume_refused"} offset {{ $a.gapDetected.window }})
        for: 0m
        labels:
          severity: critical
        annotations:
          summary: Executions may be missing from Kafka
          description: {{ printf "'{{ $labels.instance }} could not prove a window complete ({{ $labels.reason }}) in the last %s; a GapDetected record on the heartbeat topic names the window.'" $a.gapDetected.window }}
          runbook_url: {{ $runbook }}#pmxconnectorgapdetected
      - alert: PmxConnectorCancelRejectsUnrecoverable
        expr: increase(pmx_connector_gaps_detected_total{ {{- $sel -}} ,reason="cancel_rejects_unrecoverable"}[{{ $a.gapDetected.window }}]) > 0
        for: 0m
        labels:
          severity: info
        annotations:
          summary: Cancel rejects of a disconnected window cannot be recovered
          description: {{ printf "'{{ $labels.instance }} reconnected in the last %s; cancel rejects sent while it was disconnected are lost (the venue has no endpoint for them).'" $a.gapDetected.window }}
          runbook_url: {{ $runbook }}#pmxconnectorcancelrejectsunrecoverable
      - alert: PmxConnectorHoldbackOverflow
        expr: increase(pmx_connector_holdback_overflows_total{ {{- $sel -}} }[1h]) > 0
        for: 0m
        labels:
          severity: info
        annotations:
          summary: A backfill outlasted the hold-back buffer
          description: {{`'{{ $labels.instance }} released live updates before its backfill finished; per-order ordering between backfilled and live records is not guaranteed for that window.'`}}
          runbook_url: {{ $runbook }}#pmxconnectorholdbackoverflow
      - alert: PmxConnectorDeadLetters
        # The counter has no series until the first record: `unless ... offset` catches a new one.
        expr: increase(pmx_connector_dlq_records_total{ {{- $sel -}} }[{{ $a.dlqRecords.window }}]) > 0 or (pmx_connector_dlq_records_total{ {{- $sel -}} } > 0 unless pmx_connector_dlq_records_total{ {{- $sel -}} } offset {{ $a.dlqRecords.window }})
        for: 0m
        labels:
          severity: warning
        annotations:
          summary: Events went to the dead-letter topic
          description: {{ printf "'{{ $labels.instance }} dead-lettered events ({{ $labels.reason }}) in the last %s.'" $a.dlqRecords.window }}
          runbook_url: {{ $runbook }}#pmxconnectordeadletters
      - alert: PmxConnectorTokenRefreshFailing
        expr: sum without (result) (increase(pmx_connector_token_refreshes_total{ {{- $sel -}} ,result=~"refused|error"}[{{ $a.tokenRefreshFailing.window }}])) > 0 unless sum without (result) (increase(pmx_connector_token_refreshes_total{ {{- $sel -}} ,result="success"}[{{ $a.tokenRefreshFailing.window }}])) > 0
        for: 0m
        labels:
          severity: critical
        annotations:
          summary: The connector cannot get an access token
          description: {{ printf "'{{ $labels.instance }}: every token request in the last %s failed; the stream ends when the current token expires.'" $a.tokenRefreshFailing.window }}
          runbook_url: {{ $runbook }}#pmxconnectortokenrefreshfailing
      - alert: PmxConnectorNoLeader
        # Every instance of the job stands by (or its engine stopped): nobody publishes.
        expr: max without (instance, pod) (pmx_connector_leader{ {{- $sel -}} }) == 0
        for: {{ $a.noLeader.for }}
        labels:
          severity: critical
        annotations:
          summary: No pmx-connector instance leads
          description: {{ printf "'Every instance of job {{ $labels.job }} has reported pmx_connector_leader 0 for more than %s: none opens the venue stream or publishes (the leader election is stuck, or every engine stopped).'" $a.noLeader.for }}
          runbook_url: {{ $runbook }}#pmxconnectornoleader
      - alert: PmxConnectorTwoLeaders
        # Should be impossible: the broker fences the earlier transactional producer.
        expr: sum without (instance, pod) (pmx_connector_leader{ {{- $sel -}} }) > 1
        for: {{ $a.twoLeaders.for }}
        labels:
          severity: warning
        annotations:
          summary: More than one pmx-connector instance leads
          description: {{ printf "'{{ $value | humanize }} instances of job {{ $labels.job }} have reported pmx_connector_leader 1 for more than %s: two deployments with the same connector name, or a bug; the broker fences all but the newest.'" $a.twoLeaders.for }}
          runbook_url: {{ $runbook }}#pmxconnectortwoleaders
      - alert: PmxConnectorTargetAbsent
        expr: up{ {{- $sel -}} } == 0 or absent(up{ {{- $sel -}} })
        for: {{ $a.targetAbsent.for }}
        labels:
          severity: critical
        annotations:
          summary: Prometheus cannot scrape pmx-connector
          description: {{ printf "'No successful scrape of job %s: the pod is down, crash-looping, or not discovered.'" (include "pmx-connector.alertJob" .) }}
          runbook_url: {{ $runbook }}#pmxconnectortargetabsent
{{- end }}

"""Scrapes Prometheus endpoints with the Prometheus project's own Python parser (Debian's
python3-prometheus-client), an independent reading of what /metrics serves.

Usage: /usr/bin/python3 scrape_metrics.py URL [URL ...]
Prints a JSON object: URL -> {"types": {family: type}, "samples": [[name, labels, value], ...]}.
A page the parser cannot read fails the run (exit 1), with the parser's error.
"""
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families

out = {}
for url in sys.argv[1:]:
    text = urllib.request.urlopen(url, timeout=10).read().decode('utf-8')
    types, samples = {}, []
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples.append([s.name, s.labels, s.value])
    out[url] = {"types": types, "samples": samples}
print(json.dumps(out))

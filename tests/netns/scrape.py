"""Scrapes a Prometheus endpoint and parses the text exposition with the
official Python client's parser (no regex): prints every sample as JSON
lines {"name", "labels", "value"} and the families' types.

    scrape.py URL
"""

import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        content_type = r.headers.get("Content-Type", "")
        text = r.read().decode()
    families = {}
    samples = []
    for fam in text_string_to_metric_families(text):
        families[fam.name] = fam.type
        for s in fam.samples:
            samples.append({"name": s.name, "labels": s.labels, "value": s.value})
    print(json.dumps({"content_type": content_type, "families": families, "samples": samples}))


if __name__ == "__main__":
    main(sys.argv[1])

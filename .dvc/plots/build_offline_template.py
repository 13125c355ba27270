"""Rebuild offline.html, DVC's HTML template with vega, vega-lite and vega-embed inlined (no network needed).

    cd /tmp && npm pack vega@5 vega-lite@5 vega-embed@6 && for f in vega*.tgz; do mkdir -p "${f%.tgz}"; \
        tar xzf "$f" -C "${f%.tgz}"; done
    python .dvc/plots/build_offline_template.py /tmp/vega-5.*/package /tmp/vega-lite-5.*/package \
        /tmp/vega-embed-6.*/package

DVC fills ``{plot_divs}`` (``plots.html_template`` in .dvc/config); the template has no ``{scripts}``
placeholder, so DVC's CDN <script src=...> tags are never written. The libraries are BSD-3-Clause
(University of Washington Interactive Data Lab); their licence is in LICENSE-vega.txt.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEAD = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>singer-ssl plots</title>
    <!-- vega {vega}, vega-lite {vega_lite}, vega-embed {vega_embed}: BSD-3-Clause, see LICENSE-vega.txt -->
"""
TAIL = """    <style>
        body { font-family: sans-serif; display: flex; flex-direction: column; align-items: flex-start; }
        table { border-spacing: 15px; }
        /* DVC writes every chart as a child div of body, vega charts first, its id the plot's path or title with
           special characters as "_". Shown in this order: each test set's summary, ROC, DET, scores, t-SNE, probe
           confusion, invariance, then the training curves and anything else. */
        body > div { order: 9; }
        body > div[id$="_summary_png"] { order: 1; }
        body > div[id$="_roc_csv"] { order: 2; }
        body > div[id$="_det_csv"] { order: 3; }
        body > div[id$="_scores_png"] { order: 4; }
        body > div[id$="_tsne_png"] { order: 5; }
        body > div[id$="_confusion_csv"] { order: 6; }
        body > div[id$="_invariance_png"] { order: 7; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def main(vega: str, vega_lite: str, vega_embed: str) -> None:
    parts, versions = [], {}
    for name, folder, script in (("vega", vega, "vega.min.js"), ("vega_lite", vega_lite, "vega-lite.min.js"),
                                 ("vega_embed", vega_embed, "vega-embed.min.js")):
        versions[name] = json.loads((Path(folder) / "package.json").read_text())["version"]
        code = (Path(folder) / "build" / script).read_text(encoding="utf-8")
        assert "</script" not in code and "{plot_divs}" not in code and "{refresh_tag}" not in code
        parts.append(f'    <script type="text/javascript">\n{code}\n    </script>\n')
    head = HEAD.replace("{vega}", versions["vega"]).replace("{vega_lite}", versions["vega_lite"])
    head = head.replace("{vega_embed}", versions["vega_embed"])
    out = Path(__file__).with_name("offline.html")
    out.write_text(head + "".join(parts) + TAIL, encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {versions}")


if __name__ == "__main__":
    main(*sys.argv[1:4])

"""The instructor's results page: ``results/index.html``, written by ``grader batch``.

One self-contained HTML file (no server, no script, no external asset): the class's score
distribution, pass rate per criterion, the most frequent findings by rule id with the rule's
doc from the catalogue, time per submission, and a table with a link to each learner's report.
Charts are matplotlib SVG inlined in the page; they hold only numbers and the course's own
criterion titles, never a learner's text. Learner ids and finding texts reach the page through
``results.shown`` (terminal escapes made visible) and ``html.escape``.
"""

from __future__ import annotations

import html
import io
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from grader.grading.batch.results import atomic_write, load_record, safe_name, shown
from grader.grading.criteria import CRITERIA

#: Rules listed in "most frequent findings".
TOP_RULES = 15
#: Example finding texts shown per rule, and how much of each.
EXAMPLES = 3
EXAMPLE_CHARS = 300


@dataclass
class Learner:
    student: str
    key: str
    score: float
    max_score: float
    complete: bool
    seconds: float
    statuses: dict[str, str]


@dataclass
class ClassResults:
    learners: list[Learner] = field(default_factory=list)
    rule_findings: Counter = field(default_factory=Counter)  # rule id -> findings
    rule_learners: Counter = field(default_factory=Counter)  # rule id -> learners with one
    examples: dict[str, list[str]] = field(default_factory=dict)


def collect(out: Path) -> ClassResults:
    """Everything the page shows, read from ``out/reports/*.json``."""
    res = ClassResults()
    for path in sorted((out / "reports").glob("*.json")):
        rec = load_record(path)
        if rec is None:
            continue
        rep = rec["report"]
        criteria = [c for c in rep.get("criteria", []) if isinstance(c, dict)]
        student = str(rec.get("student", path.stem))
        res.learners.append(
            Learner(
                student=student,
                key=str(rec.get("key") or path.stem),
                score=_num(rep.get("score")),
                max_score=_num(rep.get("max_score")),
                complete=bool(rec.get("complete")),
                seconds=_num(rec.get("seconds")),
                statuses={str(c.get("id")): str(c.get("status", "")) for c in criteria},
            )
        )
        seen: set[str] = set()
        for c in criteria:
            for f in c.get("findings") or []:
                if not isinstance(f, dict):
                    continue
                rule = str(f.get("rule", "?"))
                res.rule_findings[rule] += 1
                if rule not in seen:
                    seen.add(rule)
                    res.rule_learners[rule] += 1
                ex = res.examples.setdefault(rule, [])
                msg = str(f.get("message", ""))
                if len(ex) < EXAMPLES and msg not in ex:
                    ex.append(msg)
    return res


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


# --- charts ------------------------------------------------------------------------------


def _svg(fig) -> str:
    """A matplotlib figure as inline SVG (text kept as text: small, and selectable)."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype


def _figure(width: float = 5.6, height: float = 2.8):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "grader", "font.size": 9})
    fig, ax = plt.subplots(figsize=(width, height))
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def score_chart(learners: list[Learner]) -> str:
    fig, ax = _figure()
    top = max([lr.max_score for lr in learners] + [1.0])
    scores = [lr.score for lr in learners]
    bins = [x - 0.5 for x in range(int(top) + 2)]
    ax.hist(scores, bins=bins, color="#3b6ea8", edgecolor="white")
    ax.set_xlabel("score")
    ax.set_ylabel("learners")
    ax.set_xlim(-0.5, top + 0.5)
    ax.yaxis.get_major_locator().set_params(integer=True)
    return _svg(fig)


def criteria_chart(rates: list[tuple[str, float]]) -> str:
    """Bars labelled with criterion ids (short: the chart keeps its size; the criteria
    table beside it gives the titles)."""
    fig, ax = _figure()
    labels = [t for t, _ in rates][::-1]
    values = [100 * r for _, r in rates][::-1]
    colors = ["#2e8540" if v >= 80 else "#c9a227" if v >= 50 else "#b33a3a" for v in values]
    ax.barh(labels, values, color=colors)
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of learners passing")
    for y, v in enumerate(values):
        ax.text(min(v + 1, 92), y, f"{v:.0f}%", va="center", fontsize=8)
    return _svg(fig)


def time_chart(learners: list[Learner]) -> str:
    fig, ax = _figure()
    secs = [lr.seconds for lr in learners]
    ax.hist(secs, bins=min(20, max(5, len(secs) // 3)), color="#6b5ea8", edgecolor="white")
    ax.set_xlabel("seconds to grade one submission")
    ax.set_ylabel("submissions")
    ax.yaxis.get_major_locator().set_params(integer=True)
    return _svg(fig)


# --- the page ----------------------------------------------------------------------------


def _e(text: object) -> str:
    """Learner-controlled or catalogue text, made printable and HTML-escaped."""
    return html.escape(shown(str(text)) if isinstance(text, str) else str(text), quote=True)


def _example(text: str) -> str:
    text = text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 3] + "..."
    return html.escape("".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text))


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
 color:#1d1d1f;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:22px;margin:4px 0 2px}h2{font-size:17px;margin:0 0 8px}
.sub{color:#555;margin:0 0 14px}
.kpis{display:flex;gap:10px;flex-wrap:wrap;margin-bottom:14px}
.kpi{background:#fff;border:1px solid #dde;border-radius:8px;padding:8px 14px;min-width:120px}
.kpi b{display:block;font-size:20px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:14px}
section{background:#fff;border:1px solid #dde;border-radius:8px;padding:12px 14px;
 margin-bottom:14px;overflow-x:auto}
svg{max-width:100%;height:auto}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f0f2f5;position:sticky;top:0}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#2e8540}.fail{color:#b33a3a;font-weight:600}.error{color:#8a4b00;font-weight:600}
.skipped{color:#888}
code{font-size:12px;background:#f0f2f5;padding:0 3px;border-radius:3px;word-break:break-all}
details summary{cursor:pointer;color:#3b6ea8}
.msg{color:#444;font-size:12px;margin:2px 0;word-break:break-word}
.id{word-break:break-all;max-width:260px}.nw,td code{white-space:nowrap}
"""


def render(out: Path, res: ClassResults, title: str = "Challenge results") -> str:
    from grader.grading.rules import all_rules

    learners = sorted(res.learners, key=lambda lr: (lr.score, lr.student))
    n = len(learners)
    scores = [lr.score for lr in learners]
    top = max([lr.max_score for lr in learners] + [0.0])
    full = sum(1 for lr in learners if lr.max_score and lr.score >= lr.max_score)
    incomplete = sum(1 for lr in learners if not lr.complete)
    rates = []
    for c in CRITERIA:
        judged = [lr for lr in learners if lr.statuses.get(c.id, "skipped") != "skipped"]
        passed = sum(1 for lr in judged if lr.statuses.get(c.id) == "pass")
        rates.append((c.id, c.title, passed, len(judged)))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        # No script, no remote anything: the page is read from disk, maybe mailed around.
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\">",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='sub'>{n} submissions in <code>{_e(str(out))}</code>; "
        f"written {time.strftime('%Y-%m-%d %H:%M %Z')}</p>",
        "<div class='kpis'>",
        _kpi("submissions", str(n)),
        _kpi("median score", f"{statistics.median(scores):g} / {top:g}" if n else "-"),
        _kpi("mean score", f"{statistics.fmean(scores):.1f}" if n else "-"),
        _kpi("full marks", f"{full} ({100 * full / n:.0f}%)" if n else "-"),
        _kpi("to regrade", str(incomplete)),
        "</div>",
    ]
    if n:
        judged_rates = [(cid, p / j) for cid, _, p, j in rates if j]
        parts += [
            "<div class='grid'>",
            f"<section><h2>Score distribution</h2>{score_chart(learners)}</section>",
            f"<section><h2>Pass rate per criterion</h2>{criteria_chart(judged_rates)}"
            "</section></div>",
        ]
    parts.append(_criteria_table(rates))
    parts.append(_findings_table(res, all_rules(), n))
    if n:
        secs = [lr.seconds for lr in learners]
        parts.append(
            "<section><h2>Time per submission</h2>"
            f"<p class='sub'>median {statistics.median(secs):.1f} s, "
            f"slowest {max(secs):.1f} s, total {sum(secs) / 60:.1f} min</p>"
            f"{time_chart(learners)}</section>"
        )
    parts.append(_learners_table(learners, out))
    parts.append("</main></body></html>\n")
    return "".join(parts)


def _kpi(label: str, value: str) -> str:
    return f"<div class='kpi'>{html.escape(label)}<b>{html.escape(value)}</b></div>"


def _criteria_table(rates) -> str:
    rows = "".join(
        f"<tr><td><code>{html.escape(cid)}</code></td><td>{html.escape(title)}</td>"
        + (
            f"<td class='n'>{p}/{j}</td><td class='n'>{100 * p / j:.0f}%</td></tr>"
            if j
            else "<td class='n skipped' colspan='2'>not judged (static grading)</td></tr>"
        )
        for cid, title, p, j in rates
    )
    return (
        "<section><h2>Criteria</h2><table><tr><th>id</th><th>criterion</th>"
        f"<th class='n'>passed</th><th class='n'>rate</th></tr>{rows}</table></section>"
    )


def _findings_table(res: ClassResults, catalogue, n: int) -> str:
    rows = []
    for rule_id, count in res.rule_findings.most_common(TOP_RULES):
        rule = catalogue.get(rule_id)
        if rule is not None:
            about = (
                f"<b>{html.escape(rule.name)}</b> ({html.escape(rule.severity)}): "
                f"{html.escape(rule.hint)}"
            )
            doc = f"<div class='msg'>{html.escape(rule.doc)}</div>" if rule.doc else ""
        else:
            about, doc = "<i>not in the rule catalogue</i>", ""
        examples = "".join(f"<div class='msg'>{_example(m)}</div>" for m in res.examples[rule_id])
        rows.append(
            f"<tr><td><code>{_e(rule_id)}</code></td><td class='n'>{res.rule_learners[rule_id]}"
            f"/{n}</td><td class='n'>{count}</td><td>{about}{doc}"
            f"<details><summary>what learners saw</summary>{examples}</details></td></tr>"
        )
    body = "".join(rows) or "<tr><td colspan='4'>no findings</td></tr>"
    return (
        f"<section><h2>Most frequent findings (top {TOP_RULES} rules)</h2><table>"
        "<tr><th>rule</th><th class='n'>learners</th><th class='n'>findings</th>"
        f"<th>what the rule says</th></tr>{body}</table></section>"
    )


def _learners_table(learners: list[Learner], out: Path) -> str:
    head = "".join(f"<th title='{html.escape(c.title)}'>{html.escape(c.id)}</th>" for c in CRITERIA)
    rows = []
    for lr in learners:
        name = safe_name(lr.key)  # a file name under reports/, never a path
        key = quote(name)
        cells = "".join(
            f"<td class='{_status_class(lr.statuses.get(c.id, ''))}'>"
            f"{html.escape(_status_mark(lr.statuses.get(c.id, '')))}</td>"
            for c in CRITERIA
        )
        rows.append(
            f"<tr><td class='id'>{_e(lr.student)}</td>"
            f"<td class='n'>{lr.score:g}/{lr.max_score:g}</td>{cells}"
            f"<td class='n'>{lr.seconds:.1f}</td><td>{'' if lr.complete else 'regrade'}</td>"
            f"<td class='nw'><a href='reports/{key}.json'>report</a>"
            + (f" · <a href='logs/{key}/'>logs</a>" if (out / "logs" / name).is_dir() else "")
            + "</td></tr>"
        )
    return (
        "<section><h2>Learners (lowest score first)</h2><table><tr><th>learner</th>"
        f"<th class='n'>score</th>{head}<th class='n'>s</th><th></th><th></th></tr>"
        f"{''.join(rows)}</table></section>"
    )


_MARKS = {"pass": "✓", "fail": "✗", "error": "!", "skipped": "–"}


def _status_mark(status: str) -> str:
    return _MARKS.get(status, "?")


def _status_class(status: str) -> str:
    return status if re.fullmatch(r"pass|fail|error|skipped", status) else ""


def write_page(out: Path, title: str = "Challenge results") -> Path:
    """Write ``out/index.html`` from the reports in ``out``; returns its path."""
    page = render(out, collect(out), title)
    path = out / "index.html"
    atomic_write(path, page.encode())
    return path

"""The SVG topology of a flow: groups for flowables, arrows for sequences, a Dag's
tasks in columns by depth with its edges, state colours, and every text escaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from headwater.daemon import yamlsource
from headwater.web.pages import topology

SVG = "{http://www.w3.org/2000/svg}"

FLOW = """\
id: shapes
namespace: company
tasks:
  - id: start
    type: io.kestra.plugin.core.log.Log
    message: go
  - id: fan
    type: io.kestra.plugin.core.flow.Parallel
    tasks:
      - id: left
        type: io.kestra.plugin.core.log.Log
        message: l
      - id: right
        type: io.kestra.plugin.core.log.Log
        message: r
  - id: graph
    type: io.kestra.plugin.core.flow.Dag
    tasks:
      - task: {id: extract, type: io.kestra.plugin.core.log.Log, message: e}
      - task: {id: transform, type: io.kestra.plugin.core.log.Log, message: t}
        dependsOn: [extract]
      - task: {id: audit, type: io.kestra.plugin.core.log.Log, message: a}
        dependsOn: [extract]
      - task: {id: load, type: io.kestra.plugin.core.log.Log, message: l}
        dependsOn: [transform, audit]
  - id: check
    type: io.kestra.plugin.core.flow.If
    condition: "{{ true }}"
    then:
      - id: yes
        type: io.kestra.plugin.core.log.Log
        message: y
    else:
      - id: no
        type: io.kestra.plugin.core.log.Log
        message: n
errors:
  - id: alert
    type: io.kestra.plugin.core.log.Log
    message: failed
"""


def parse(text: str) -> ET.Element:
    return ET.fromstring(str(topology.render(yamlsource.load(text, "f.yaml").data)))


def boxes(svg: ET.Element) -> dict[str, tuple[float, float]]:
    """Top-left corner of each runnable task's box, by task id."""
    found = {}
    for group in svg.iter(f"{SVG}g"):
        if "task" in group.get("class", "").split():
            rect = group.find(f"{SVG}rect")
            label = group.find(f"{SVG}text")
            assert rect is not None and label is not None
            found[str(label.text)] = (float(rect.get("x", 0)), float(rect.get("y", 0)))
    return found


def test_svg_is_well_formed_and_shows_every_task() -> None:
    svg = parse(FLOW)
    assert svg.tag == f"{SVG}svg"
    found = boxes(svg)
    assert set(found) == {
        "start",
        "left",
        "right",
        "extract",
        "transform",
        "audit",
        "load",
        "yes",
        "no",
        "alert",
    }
    groups = [g for g in svg.iter(f"{SVG}g") if "group" in g.get("class", "")]
    titles = [str(g.findtext(f"{SVG}title")) for g in groups]
    assert titles == ["fan (core.flow.Parallel)", "graph (core.flow.Dag)", "check (core.flow.If)"]


def test_sequences_read_left_to_right_and_parallel_branches_stack() -> None:
    found = boxes(parse(FLOW))
    assert found["start"][0] < found["left"][0] < found["extract"][0] < found["yes"][0]
    assert found["left"][0] == found["right"][0] and found["left"][1] < found["right"][1]


def test_dag_tasks_sit_in_columns_by_depth_with_their_edges() -> None:
    svg = parse(FLOW)
    found = boxes(svg)
    assert found["extract"][0] < found["transform"][0] == found["audit"][0] < found["load"][0]
    curves = [p for p in svg.iter(f"{SVG}path") if p.get("class") == "edge"]
    assert len(curves) == 4  # extract->transform, extract->audit, transform->load, audit->load


def test_branches_and_errors_are_labelled_lanes() -> None:
    labels = [t.text for t in parse(FLOW).iter(f"{SVG}text") if t.get("class") == "lane"]
    assert labels == ["then", "else", "errors"]


def test_states_colour_the_tasks() -> None:
    data = yamlsource.load(FLOW, "f.yaml").data
    text = str(topology.render(data, {"start": "SUCCESS", "left": "FAILED", "fan": "RUNNING"}))
    assert re.search(r'<g class="task st-success"><title>start', text)
    assert re.search(r'<g class="task st-failed"><title>left \(core.log.Log\): FAILED', text)
    assert '<g class="group st-running">' in text


def test_every_text_is_escaped() -> None:
    data = {"tasks": [{"id": "<script>x</script>", "type": "<b>odd</b>"}]}
    text = str(topology.render(data))
    assert "<script>" not in text and "<b>" not in text
    assert "&lt;script&gt;" in text
    ET.fromstring(text)  # still well-formed


def test_a_flow_without_tasks_says_so() -> None:
    assert "no tasks" in str(topology.render({"id": "x"}))

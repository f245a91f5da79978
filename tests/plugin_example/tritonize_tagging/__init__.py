"""text-tagging: which labels of a multi-label classifier pass a threshold.

This module is what the ``tritonize.tasks`` entry point loads, in every layer
(the CLI, the SDK, the load test): it declares the task and names its parts,
and imports nothing heavy. ``tritonize export`` loads the exporter plugin, the
SDK loads the codec, each only when it needs it.
"""

from tritonize.tasks import TaskDefinition

TASK = TaskDefinition(
    name="text-tagging",
    inputs=("TEXT",),
    exporter="tritonize_tagging.exporter:TextTaggingTask",
    codec="tritonize_tagging.codec:TaggingCodec",
    aliases=("tagging", "tags"),
    summary="the labels of a multi-label classifier whose score passes a threshold",
    parameters={"threshold": "the score a label needs (default: the export's, 0.5)"},
    samples=(
        {"text": "The match was cancelled because of the storm.", "length": "short"},
        {"text": "Shares of the clinic chain rose after the new vaccine was approved.", "length": "short"},
    ),
)

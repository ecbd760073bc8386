"""Efficiency metrics of the paper (§4 of the reproduction spec): size in MiB, MACs per image, FPS."""
from gdws.metrics.fps import measure_fps
from gdws.metrics.macs import count_macs
from gdws.metrics.size import count_params, size_mb
from gdws.metrics.speed import interleaved_fps, measure_speed
from gdws.utils import device_name  # the hardware that FPS rows name

__all__ = ["count_macs", "count_params", "device_name", "interleaved_fps", "measure_fps", "measure_speed", "size_mb"]

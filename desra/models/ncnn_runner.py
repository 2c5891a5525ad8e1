"""Running an ncnn graph as published, in Tencent ncnn's own fp32 CPU runtime: the reference the imported
networks are tested against and the baseline the SR benchmark times (the test extra's ``ncnn`` package)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from desra.core.errors import CheckpointError
from desra.models.ncnn_format import parse_param
from desra.models.ncnn_mapping import map_graph


class NcnnRunner:
    """Tencent ncnn's CPU runtime on one ``.param``/``.bin`` pair, fp32 throughout (the test extra's ``ncnn`` package)."""

    def __init__(self, param: str | Path, bin_path: str | Path, *, threads: int = 1):
        """Load the graph with Vulkan, fp16 and bf16 off, so ncnn computes in fp32 like desra does."""
        from desra.core.errors import DependencyError

        try:
            import ncnn
        except ImportError as error:
            raise DependencyError(f"running ncnn graphs needs the ncnn package ({error}); pip install ncnn") from None
        self._ncnn = ncnn
        self.net = ncnn.Net()
        opt = self.net.opt
        opt.use_vulkan_compute = False
        opt.num_threads = int(threads)
        for flag in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage", "use_bf16_packed"):
            if hasattr(opt, flag):
                setattr(opt, flag, False)
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(bin_path)) != 0:
            raise CheckpointError(f"ncnn could not load {param} / {bin_path}")
        graph = parse_param(Path(param).read_text(encoding="utf-8"), source=str(param))
        mapping = map_graph(graph)
        self.input_blob, self.output_blob = mapping.input_blob, mapping.output_blob

    def __call__(self, image: Any) -> Any:
        """(H, W, 3) float32 RGB -> (sH, sW, 3) float32, unclamped network output."""
        import numpy as np

        # ncnn.Mat wraps the array's memory without copying: keep the array alive until extraction ends.
        planes = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
        extractor = self.net.create_extractor()
        extractor.input(self.input_blob, self._ncnn.Mat(planes))
        status, out = extractor.extract(self.output_blob)
        if status != 0:
            raise CheckpointError(f"ncnn failed to run the graph (status {status})")
        result = np.array(out).transpose(1, 2, 0).copy()
        del extractor, planes
        return result

"""The step's live set at each moment where its peak can fall, measured on CPU with torch's MemTracker: the largest
total (every category) while each part of the step runs, the way harness/measure/memory.py measures the step's
peak. Moments follow the order of a step: the forward, the loss's backward (until the head's backward starts), the
head's backward (lm_head), the layers' backward (and recomputation under checkpointing), the optimizer step."""

import gc

from harness.measure.memory import quantization_state_bytes
from harness.measure.trackers import CategoryPeakTracker, snapshot


class MomentTracker(CategoryPeakTracker):
    """CategoryPeakTracker that keeps the largest total seen in each moment of the step."""

    def __init__(self) -> None:
        super().__init__()
        self.moment = "forward"
        self.largest: dict[str, int] = {}

    def _update_peak_stats(self, peak_state) -> None:
        super()._update_peak_stats(peak_state)
        if self.moment in ("loss backward", "head backward"):
            in_head = any(p.endswith("lm_head") for p in self._mod_tracker.parents)
            layers = any(
                ".layers." in p or ".h." in p or p.endswith(".norm") or p.endswith(".ln_f")
                for p in self._mod_tracker.parents
            )
            if in_head:
                self.moment = "head backward"
            elif layers or (self.moment == "head backward"):
                self.moment = "layers backward"
        total = sum(dev.get("Total", 0) for dev in self._curr_mem_snap.values())
        self.largest[self.moment] = max(self.largest.get(self.moment, 0), total)


def measured_moments(workload) -> dict[str, int]:
    """One step after a warm-up step (the optimizer's state exists), each moment's largest live set in bytes, with
    bitsandbytes' 4-bit quantization state (which no tracker sees) added to each, as the memory pass adds it."""
    workload.warm_up(1, 0)
    workload.reset_grads()
    gc.collect()
    quant = quantization_state_bytes(workload.model)
    tracker = MomentTracker()
    tracker.track_external(workload.model, workload.optimizer)
    with tracker:
        loss = workload.forward_loss()
        end_of_forward = snapshot(tracker, "current").get("Total", 0)
        tracker.moment = "loss backward"
        workload.backward(loss)
        del loss
        tracker.moment = "optimizer step"
        workload.optimizer.step()
    workload.reset_grads()
    out = {k: v + quant for k, v in tracker.largest.items()}
    out["end of forward"] = end_of_forward + quant
    return out

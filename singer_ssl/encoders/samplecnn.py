"""SampleCNN on raw waveforms (SemiSupCon, SemiSupCon ``models/encoders/samplecnn.py``; Lee et al. 2017).

    sequential.0: Conv1d(1, 128, k3, stride 3) + BN + ReLU
    sequential.1-9: Conv1d(k3, pad 1) + BN + ReLU + MaxPool1d(3)   channels 128,128,256,256,256,256,256,256,512
    sequential.10: Conv1d(512, 512, k3, pad 1) + BN + ReLU
    -> mean over the remaining time steps -> (B, 512)

Time resolution: the stack divides the length by 3^10 = 59,049 (floor at every stage), so inputs
need S >= 59,049 samples. SemiSupCon used 2.7 s at 22,050 Hz (59,535 samples), where one time step is
left and its ``flatten`` equals the mean used here; longer inputs leave floor(S / 59049) steps, which
are averaged (a choice of this project: the seed never saw them). At 44.1 kHz one step covers
1.34 s of audio, so the receptive field is half the seed's in seconds.
"""

from __future__ import annotations

import torch
from torch import nn

from singer_ssl.encoders.common import WAVEFORM

CHANNELS = (128, 128, 256, 256, 256, 256, 256, 256, 512)
MIN_SAMPLES = 3**10


class SampleCNN(nn.Module):
    """SampleCNN encoder: waveform (B, S) (or (B, 1, S)) -> (B, 512); needs S >= 59,049."""

    input_kind = WAVEFORM
    min_samples = 59049  # 3^10: the shortest input the strided convolutions accept (singer_ssl.api refuses less)
    min_length = MIN_SAMPLES

    def __init__(self) -> None:
        super().__init__()
        self.embedding_dim = CHANNELS[-1]
        self.min_length = MIN_SAMPLES
        layers: list[nn.Module] = [nn.Sequential(nn.Conv1d(1, 128, 3, stride=3), nn.BatchNorm1d(128), nn.ReLU())]
        in_ch = 128
        for out_ch in CHANNELS:
            layers.append(nn.Sequential(nn.Conv1d(in_ch, out_ch, 3, stride=1, padding=1), nn.BatchNorm1d(out_ch),
                                        nn.ReLU(), nn.MaxPool1d(3, stride=3)))
            in_ch = out_ch
        layers.append(nn.Sequential(nn.Conv1d(in_ch, in_ch, 3, stride=1, padding=1), nn.BatchNorm1d(in_ch),
                                    nn.ReLU()))
        self.sequential = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S) waveform in [-1, 1] -> (B, 512)."""
        if x.dim() == 3 and x.shape[1] == 1:
            x = x.squeeze(1)
        if not torch.jit.is_tracing() and x.dim() != 2:
            raise ValueError("samplecnn: expected a waveform batch (B, S), got shape " + str(list(x.shape)))
        if not torch.jit.is_tracing() and x.shape[1] < self.min_length:
            raise ValueError("samplecnn: needs at least 59049 samples (3^10), got S=" + str(x.shape[1]))
        return self.sequential(x.unsqueeze(1)).mean(dim=2)

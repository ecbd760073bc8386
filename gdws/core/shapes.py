"""Conv geometry, one helper per fact: explicit padding and output size, as nn.Conv2d computes them.

Written without postponed annotations and with plain int arithmetic so that TorchScript can compile the
forms that call these helpers from `forward`.
"""
from typing import List, Tuple, Union

Padding = Union[str, Tuple[int, int]]


def conv_pads(kernel_size: Tuple[int, int], dilation: Tuple[int, int], padding: Padding) -> Tuple[int, int, int, int]:
    """Explicit (left, right, top, bottom) padding of a conv, resolving 'same' and 'valid' as nn.Conv2d does."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        # nn.Conv2d(padding='same') puts the odd extra pixel on the right/bottom
        th = dilation[0] * (kernel_size[0] - 1)
        tw = dilation[1] * (kernel_size[1] - 1)
        return (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    return (padding[1], padding[1], padding[0], padding[0])


def conv_output_length(size: int, kernel: int, stride: int, pad_total: int, dilation: int) -> int:
    """Output length along one dimension of a conv whose input is padded by ``pad_total`` pixels in all."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def conv_output_hw(hw: List[int], kernel_size: List[int], stride: List[int], pads: List[int],
                   dilation: List[int]) -> List[int]:
    """Output (H', W') of a conv for input (H, W) and explicit pads (left, right, top, bottom)."""
    return [conv_output_length(hw[0], kernel_size[0], stride[0], pads[2] + pads[3], dilation[0]),
            conv_output_length(hw[1], kernel_size[1], stride[1], pads[0] + pads[1], dilation[1])]

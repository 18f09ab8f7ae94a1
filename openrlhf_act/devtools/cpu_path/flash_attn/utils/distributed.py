"""``all_gather`` along the first dimension, as flash_attn.utils.distributed provides it."""

import torch
import torch.distributed as dist


def all_gather(input_: torch.Tensor, process_group) -> torch.Tensor:
    world_size = dist.get_world_size(process_group)
    if world_size == 1:
        return input_
    output = torch.empty(world_size * input_.shape[0], *input_.shape[1:], dtype=input_.dtype, device=input_.device)
    dist.all_gather_into_tensor(output, input_.contiguous(), group=process_group)
    return output

-- Argo CD health of a ShadowRoute (shadowroute.io/v1alpha1), read from its status.
-- Put it in argocd-cm under resource.customizations.health.shadowroute.io_ShadowRoute
-- (docs/gitops.md). Lua 5.1, as Argo CD runs it; tested on the operator's real status.
--   Progressing  the operator has not reported this generation yet, or a rollout runs
--                (Reconciling=True: shadow, canary steps, preview, promotion, warm period)
--   Suspended    a rollout is held (phase Paused: the pause gate, spec.paused, or waiting
--                for the promote gate)
--   Degraded     Stalled=True (rolled back, first version never available, a child the
--                API server refuses to let the operator write, a spec it refuses), or the
--                version that serves is unavailable (Available=False); a write the API
--                server failed (5xx, 429) is retried and stays Progressing
--   Healthy      Ready=True: the desired template serves all traffic and is available
local function said(c)
  if c.message ~= nil and c.message ~= "" then
    return (c.reason or "") .. ": " .. c.message
  end
  return c.reason or ""
end

local status = obj.status
if status == nil or status.conditions == nil then
  return {status = "Progressing", message = "waiting for the operator's first status"}
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration or 0) < generation then
  return {status = "Progressing", message = "the operator has not seen this generation yet"}
end

local c = {}
for _, condition in ipairs(status.conditions) do
  c[condition.type] = condition
end

if c.Stalled ~= nil and c.Stalled.status == "True" then
  return {status = "Degraded", message = said(c.Stalled)}
end
if c.Available ~= nil and c.Available.status == "False" and status.phase ~= "Initializing" then
  return {status = "Degraded", message = said(c.Available)}
end
if status.phase == "Paused" then
  return {status = "Suspended", message = said(c.Reconciling or c.Ready or {})}
end
if c.Reconciling ~= nil and c.Reconciling.status == "True" then
  return {status = "Progressing", message = said(c.Reconciling)}
end
if c.Ready ~= nil and c.Ready.status == "True" then
  return {status = "Healthy", message = said(c.Ready)}
end
return {status = "Progressing", message = said(c.Ready or {})}

// Every Redis key FleetHub uses is built here. Per-device keys carry the device id as a hash tag
// (`{id}`), so a script that touches one device touches one cluster slot. Device ids cannot contain
// braces (see ids.ts), so the tag is always exactly the id. Registered models share one tag,
// `{models}`, so one script can take a key and store a version atomically (there are at most 65535).
export interface RedisKeys {
  device(id: string): string
  presence(id: string): string
  twin(id: string): string
  command(deviceId: string, id: string): string
  commandQueue(deviceId: string): string
  idempotency(deviceId: string, key: string): string
  /** A device's model binding and self-description (a hash). */
  deviceModel(id: string): string
  /** A model's versions: a hash of version → document. */
  model(id: string): string
  /** Model key → `id@version`. */
  modelKeys: string
  /** The last model key handed out. */
  modelKeySeq: string
  /** All model ids, a sorted set scored 0 and read in lexicographic order. */
  allModels: string
  /** All device ids, a sorted set scored 0 and read in lexicographic order. */
  allDevices: string
  byStatus(status: string): string
  byTag(key: string, value: string): string
  byParent(parentId: string): string
  /** An enrollment (a hash like a device's: v, rev, doc). */
  enrollment(id: string): string
  /** All enrollment ids, a sorted set read in lexicographic order. */
  allEnrollments: string
  /** What the bootstrap service remembers of a registration id (its device's hash tag). */
  registration(registrationId: string): string
  /** The registration ids of an enrollment, a sorted set. */
  enrollmentRegistrations(enrollmentId: string): string
  /** A used provisioning token, kept until it expires. */
  usedToken(key: string): string
  nodes: string
  events: string
}

export function createKeys(prefix: string): RedisKeys {
  return {
    device: (id) => `${prefix}:{${id}}:dev`,
    presence: (id) => `${prefix}:{${id}}:presence`,
    twin: (id) => `${prefix}:{${id}}:twin`,
    command: (deviceId, id) => `${prefix}:{${deviceId}}:cmd:${id}`,
    commandQueue: (deviceId) => `${prefix}:{${deviceId}}:cmdq`,
    idempotency: (deviceId, key) => `${prefix}:{${deviceId}}:idem:${key}`,
    deviceModel: (id) => `${prefix}:{${id}}:model`,
    model: (id) => `${prefix}:{models}:model:${id}`,
    modelKeys: `${prefix}:{models}:keys`,
    modelKeySeq: `${prefix}:{models}:seq`,
    allModels: `${prefix}:{models}:ids`,
    allDevices: `${prefix}:idx:devices`,
    byStatus: (status) => `${prefix}:idx:status:${status}`,
    // tag keys are [A-Za-z0-9_.-]; values are free text, so they are percent-encoded
    byTag: (key, value) => `${prefix}:idx:tag:${key}:${encodeURIComponent(value)}`,
    byParent: (parentId) => `${prefix}:idx:parent:{${parentId}}`,
    enrollment: (id) => `${prefix}:{enr:${id}}:enr`,
    allEnrollments: `${prefix}:idx:enrollments`,
    registration: (registrationId) => `${prefix}:{${registrationId}}:reg`,
    enrollmentRegistrations: (enrollmentId) => `${prefix}:idx:enr-regs:{enr:${enrollmentId}}`,
    usedToken: (key) => `${prefix}:used-token:${key}`,
    nodes: `${prefix}:nodes`,
    events: `${prefix}:events`,
  }
}

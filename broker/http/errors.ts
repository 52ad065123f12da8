// One mapper from any error to the HTTP answer `{"error":{"code","message"}}`.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { errorBody, errors, statusOf } from '../../registry/errors.js'
import type { Logger } from '../log.js'

/** Fastify's own client errors, translated into the registry's codes. */
function translate(err: FastifyError): Error {
  if (err.validation) {
    const first = err.validation[0]
    if (first?.keyword === 'pattern' && (first.instancePath === '/id' || first.instancePath === '/parentId')) {
      return new errors.INVALID_DEVICE_ID()
    }
    return new errors.BAD_REQUEST(
      `${err.validationContext ?? 'request'}${err.message.replace(/^(body|querystring|params)/, '')}`,
    )
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new errors.PAYLOAD_TOO_LARGE('the request body is too large')
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new errors.UNSUPPORTED_MEDIA_TYPE('send application/json')
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new errors.BAD_REQUEST('the JSON body is empty')
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new errors.BAD_REQUEST('the body is not valid JSON')
  }
  if (err instanceof SyntaxError || (err.statusCode === 400 && !err.code?.startsWith('FLEETHUB_'))) {
    return new errors.BAD_REQUEST('the body is not valid JSON')
  }
  return err
}

export function createErrorHandler(log: Logger) {
  return function handleError(err: FastifyError, req: FastifyRequest, reply: FastifyReply) {
    const e = translate(err)
    const status = statusOf(e)
    if (status >= 500) log.error({ err, method: req.method, url: req.url }, 'request failed')
    if (status === 401) reply.header('www-authenticate', 'Bearer')
    return reply.status(status).send(errorBody(e))
  }
}
